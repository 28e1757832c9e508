{{/* Names and labels shared by every template. */}}
{{- define "sconce.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sconce.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Cluster-scoped names carry the release namespace: two releases never collide. */}}
{{- define "sconce.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "sconce.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sconce.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sconce.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "sconce.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sconce.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: sconce
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sconce.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sconce.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sconce.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "sconce.leaseName" -}}
{{- include "sconce.fullname" . }}
{{- end }}

{{/* The selector labels as k=v,k=v (the operator lets its own pods into NetworkPolicies). */}}
{{- define "sconce.selectorString" -}}
{{- $pairs := list }}
{{- range $k, $v := (include "sconce.selectorLabels" . | fromYaml) }}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}
