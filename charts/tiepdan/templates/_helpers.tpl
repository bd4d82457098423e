{{/*
The release's full name: "tiepdan-operator" for a release named tiepdan (the Service name the
operator's global alerts and webhook expect), "<release>-operator" when the release name already
says tiepdan, "<release>-tiepdan-operator" otherwise.
*/}}
{{- define "tiepdan.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s-operator" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tiepdan.serviceAccountName" -}}
{{- default (include "tiepdan.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/*
Selector labels. app.kubernetes.io/name is also the operator's scrape job (the ServiceMonitor's
jobLabel), which the global alerts match as job="tiepdan-operator".
*/}}
{{- define "tiepdan.selectorLabels" -}}
app.kubernetes.io/name: tiepdan-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tiepdan.labels" -}}
{{ include "tiepdan.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: tiepdan
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
