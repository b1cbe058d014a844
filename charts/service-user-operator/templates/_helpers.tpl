{{- define "suo.name" -}}service-user-operator{{- end }}

{{- define "suo.fullname" -}}
{{- if contains "service-user-operator" .Release.Name }}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{ else }}{{ printf "%s-service-user-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{ end }}
{{- end }}

{{- define "suo.labels" -}}
app.kubernetes.io/name: {{ include "suo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "suo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "suo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "suo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}{{ default (include "suo.fullname" .) .Values.serviceAccount.name }}{{ else }}{{ default "default" .Values.serviceAccount.name }}{{ end }}
{{- end }}

{{- /* The verifier: the verification service alone, its own pods and ServiceAccount (--mode=verifier). */ -}}
{{- define "suo.verifierName" -}}
{{- printf "%s-verifier" (include "suo.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- /* Not the controller's selector labels: neither Deployment may select the other's pods. */ -}}
{{- define "suo.verifierSelectorLabels" -}}
app.kubernetes.io/name: {{ include "suo.name" . }}-verifier
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "suo.verifierServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}{{ default (include "suo.verifierName" .) .Values.verifier.serviceAccountName }}{{ else }}{{ default "default" .Values.verifier.serviceAccountName }}{{ end }}
{{- end }}

{{- /* The image: repository@digest when image.digest is set (the tag is then ignored), else repository:tag. */ -}}
{{- define "suo.image" -}}
{{- if .Values.image.digest }}{{ printf "%s@%s" .Values.image.repository .Values.image.digest }}{{ else }}{{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}{{ end }}
{{- end }}

{{- /* topologySpreadConstraints for one Deployment: a constraint without labelSelector selects that Deployment's own pods (dict: constraints, selector — the selector labels' YAML). */ -}}
{{- define "suo.topologySpread" -}}
{{- $out := list }}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}{{ $_ := set $c "labelSelector" (dict "matchLabels" ($.selector | fromYaml)) }}{{ end }}
{{- $out = append $out $c }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{- /* The PodDisruptionBudget's spec for a Deployment of .replicas pods: minAvailable only below the replica count (it would block every drain), else maxUnavailable. */ -}}
{{- define "suo.pdbBudget" -}}
{{- $pdb := .root.Values.podDisruptionBudget }}
{{- if not (kindIs "invalid" $pdb.minAvailable) }}
{{- if and (not (kindIs "string" $pdb.minAvailable)) (ge (int $pdb.minAvailable) (int .replicas)) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%v) must be below %s (%v): with every replica required, no pod may ever be evicted and `kubectl drain` blocks. Lower it, or unset it and use podDisruptionBudget.maxUnavailable" $pdb.minAvailable .field (int .replicas)) }}
{{- end }}
minAvailable: {{ $pdb.minAvailable }}
{{- else }}
maxUnavailable: {{ $pdb.maxUnavailable }}
{{- end }}
{{- end }}

{{- /* Egress both Deployments need: DNS, and the API server. */ -}}
{{- define "suo.networkPolicy.egress" -}}
{{- $np := .Values.networkPolicy }}
# DNS, wherever the cluster's resolver runs.
- ports:
  - { port: 53, protocol: UDP }
  - { port: 53, protocol: TCP }
# The API server: its Service's endpoints (port 6443 on most clusters, 443 on some).
- ports:
  {{- range $np.apiServer.ports }}
  - { port: {{ . }}, protocol: TCP }
  {{- end }}
  {{- with $np.apiServer.cidrs }}
  to:
  {{- range . }}
  - ipBlock: { cidr: {{ . }} }
  {{- end }}
  {{- end }}
{{- with $np.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end }}
