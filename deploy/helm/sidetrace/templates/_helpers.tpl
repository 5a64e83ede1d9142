{{/* The release's webhook name, at most 63 characters. */}}
{{- define "sidetrace.fullname" -}}
{{- if contains "sidetrace" .Release.Name -}}
{{- printf "%s-webhook" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-sidetrace-webhook" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sidetrace.labels" -}}
app.kubernetes.io/name: sidetrace-webhook
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: admission-webhook
app.kubernetes.io/part-of: sidetrace
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "sidetrace.selectorLabels" -}}
app.kubernetes.io/name: sidetrace-webhook
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sidetrace.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The image injected into pods. */}}
{{- define "sidetrace.injectImage" -}}
{{- $repo := .Values.inject.image.repository | default .Values.image.repository -}}
{{- $tag := .Values.inject.image.tag | default .Values.image.tag | default .Chart.AppVersion -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{- define "sidetrace.tlsSecret" -}}
{{- printf "%s-tls" (include "sidetrace.fullname" .) -}}
{{- end -}}

{{- define "sidetrace.serviceDNS" -}}
{{- printf "%s.%s.svc" (include "sidetrace.fullname" .) .Release.Namespace -}}
{{- end -}}
