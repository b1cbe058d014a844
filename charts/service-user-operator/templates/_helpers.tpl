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
