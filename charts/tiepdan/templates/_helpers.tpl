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

{{/*
The namespace the controllers watch: watchNamespace, else the release's own. With
rbac.clusterWide every namespace is watched, so watchNamespace must stay empty.
*/}}
{{- define "tiepdan.watchNamespace" -}}
{{- if .Values.rbac.clusterWide -}}
{{- if .Values.watchNamespace -}}
{{- fail "rbac.clusterWide: true watches every namespace; leave watchNamespace empty (or set rbac.clusterWide: false to watch only watchNamespace)" -}}
{{- end -}}
{{- else -}}
{{- default .Release.Namespace .Values.watchNamespace -}}
{{- end -}}
{{- end -}}

{{- define "tiepdan.turnSelectorLabels" -}}
app.kubernetes.io/name: tiepdan-turn
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tiepdan.turnLabels" -}}
{{ include "tiepdan.turnSelectorLabels" . }}
app.kubernetes.io/component: turn
app.kubernetes.io/part-of: tiepdan
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}


{{- define "tiepdan.entryName" -}}
{{- printf "%s-entry" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tiepdan.entrySelectorLabels" -}}
app.kubernetes.io/name: tiepdan-entry
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tiepdan.entryLabels" -}}
{{ include "tiepdan.entrySelectorLabels" . }}
app.kubernetes.io/component: entry
app.kubernetes.io/part-of: tiepdan
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/*
The entry's URL, what links name: https://<host>, with the Service's port unless it is 443 (an
Ingress always serves 443).
*/}}
{{- define "tiepdan.entryUrl" -}}
{{- $host := required "entry.host is required with entry.enabled (the public DNS name offices reach)" .Values.entry.host -}}
{{- if or .Values.entry.ingress.enabled (eq (int .Values.entry.service.port) 443) -}}
{{- printf "https://%s" $host -}}
{{- else -}}
{{- printf "https://%s:%d" $host (int .Values.entry.service.port) -}}
{{- end -}}
{{- end -}}
