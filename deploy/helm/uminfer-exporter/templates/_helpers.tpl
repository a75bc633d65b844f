{{/* Names and labels, in the prometheus-community charts' style. */}}

{{- define "uminfer-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name; the StatefulSets, Service and ConfigMaps are named after it.
It is kept to 52 characters so that "-b" and a pod's "-NN" still fit a DNS label. */}}
{{- define "uminfer-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "uminfer-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "uminfer-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "uminfer-exporter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "uminfer-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The exporter's config: values.config, plus accounting.origin and, with two replicas, the
peers of each pod: the pod of the same shard index in the other StatefulSet. ${POD_INDEX}
is expanded by the exporter from the environment (the pod-index label, downward API). */}}
{{- define "uminfer-exporter.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if .Values.accounting.origin }}
{{- $_ := set $config "accounting" (dict "origin" .Values.accounting.origin) }}
{{- end }}
{{- if eq (int .Values.replicas) 2 }}
{{- $full := include "uminfer-exporter.fullname" . }}
{{- $peers := list }}
{{- range $set := list $full (printf "%s-b" $full) }}
{{- $peers = append $peers (printf "%s://%s-${POD_INDEX}.%s:%d" $.Values.ha.scheme $set $full (int $.Values.service.port)) }}
{{- end }}
{{- $_ := set $config "ha" (mustMergeOverwrite (dict "timeout" "10s") (deepCopy .Values.ha.config) (dict "peers" $peers)) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{- define "uminfer-exporter.configMapName" -}}
{{- .Values.existingConfigMap | default (printf "%s-config" (include "uminfer-exporter.fullname" .)) }}
{{- end }}

{{/* The shipped rules or dashboard with the job name the Service gives Prometheus. */}}
{{- define "uminfer-exporter.withJob" -}}
{{- $ctx := index . 0 }}
{{- $text := $ctx.Files.Get (index . 1) }}
{{- $text | replace "job=\"uminfer\"" (printf "job=%q" $ctx.Values.job) | replace "job=\\\"uminfer\\\"" (printf "job=\\\"%s\\\"" $ctx.Values.job) }}
{{- end }}

{{- define "uminfer-exporter.validate" -}}
{{- if not (has (int .Values.replicas) (list 1 2)) }}
{{- fail "replicas must be 1 or 2: each shard runs one process, or a pair that exports the same counters" }}
{{- end }}
{{- if lt (int .Values.shards) 1 }}
{{- fail "shards must be 1 or more" }}
{{- end }}
{{- if and (eq (int .Values.replicas) 2) (not .Values.existingConfigMap) (not (or .Values.accounting.origin (dig "accounting" "origin" "" .Values.config))) }}
{{- fail "replicas: 2 needs accounting.origin (RFC 3339, e.g. 2025-01-01T00:00:00Z): both replicas count usage from it, so they export the same counters" }}
{{- end }}
{{- if not .Values.credentials.existingSecret }}
{{- fail "credentials.existingSecret: name the Secret that holds the API key pair (keys public_key and private_key); see the chart's README" }}
{{- end }}
{{- end }}
