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
