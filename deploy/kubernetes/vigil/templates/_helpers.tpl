{{/* The release's base name, at most 63 characters. */}}
{{- define "vigil.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* A component's object name: "<fullname>-<component>". Call with (list $ $name). */}}
{{- define "vigil.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "vigil.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "vigil.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vigil
{{- end -}}

{{/* The labels that select every pod of the release. */}}
{{- define "vigil.releaseSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The labels that select one component's pods. Call with (list $ $name). */}}
{{- define "vigil.selectorLabels" -}}
{{- $root := index . 0 -}}
{{ include "vigil.releaseSelector" $root }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* The image, by digest when one is given (what a release should use), else by tag. */}}
{{- define "vigil.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The Secret the pods read their secrets from: the one External Secrets writes, or one
made outside the chart. Empty when there is none. */}}
{{- define "vigil.secretName" -}}
{{- if .Values.externalSecrets.enabled -}}
{{- printf "%s-secrets" (include "vigil.fullname" .) -}}
{{- else -}}
{{- .Values.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* Whether the Kafka bus joins the roles. */}}
{{- define "vigil.kafka" -}}
{{- if eq (.Values.config.bus.backend | default "embedded") "kafka" -}}true{{- end -}}
{{- end -}}

{{/*
vigil.toml from a map of values. Helm reads every number in values as a float, and toToml
writes it so (6.0, 5e+06), which Vigil's integer settings refuse; this writes whole numbers
as integers. Keys with other characters than letters, digits, - and _ are quoted (Kafka
properties hold dots). A list of maps is an array of
tables ([[sources.cloudwatch]]). Call with (dict "path" (list) "table" $map).
*/}}
{{- define "vigil.toml.value" -}}
{{- if kindIs "string" . -}}{{ toJson . }}
{{- else if kindIs "bool" . -}}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) -}}
{{- if eq (float64 .) (floor .) -}}{{ printf "%d" (int64 .) }}{{- else -}}{{ . }}{{- end -}}
{{- else if or (kindIs "int" .) (kindIs "int64" .) -}}{{ . }}
{{- else if kindIs "slice" . -}}
[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "vigil.toml.value" $v }}{{ end }}]
{{- else if kindIs "map" . -}}
{ {{- range $i, $k := keys . | sortAlpha }}{{ if $i }}, {{ end }}{{ include "vigil.toml.key" $k }} = {{ include "vigil.toml.value" (get $ $k) }}{{ end -}} }
{{- else -}}
{{- fail (printf "vigil.toml: cannot write %v (%s)" . (kindOf .)) -}}
{{- end -}}
{{- end -}}

{{- define "vigil.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "vigil.toml.isTables" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) -}}{{- if kindIs "map" (first .) -}}true{{- end -}}{{- end -}}
{{- end -}}

{{- define "vigil.toml.table" -}}
{{- $path := .path -}}
{{- $table := .table -}}
{{- range $k := keys $table | sortAlpha }}
{{- $v := get $table $k }}
{{- if and (not (kindIs "map" $v)) (not (include "vigil.toml.isTables" $v)) (not (kindIs "invalid" $v)) }}
{{ include "vigil.toml.key" $k }} = {{ include "vigil.toml.value" $v }}
{{- end }}
{{- end }}
{{- range $k := keys $table | sortAlpha }}
{{- $v := get $table $k }}
{{- $sub := append $path (include "vigil.toml.key" $k) }}
{{- if kindIs "map" $v }}

[{{ join "." $sub }}]
{{- include "vigil.toml.table" (dict "path" $sub "table" $v) }}
{{- else if include "vigil.toml.isTables" $v }}
{{- range $item := $v }}

[[{{ join "." $sub }}]]
{{- include "vigil.toml.table" (dict "path" $sub "table" $item) }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
An object's annotations: `extra` (a map), and the waiver of checkov's CKV_K8S_21 when the
chart is rendered into the namespace "default", as checkov's helm runner renders it (it passes
no --namespace). Vigil is installed into a namespace of its own (-n vigil); NOTES.txt warns
when it is not. Call with (list $ $extra) under metadata.
*/}}
{{- define "vigil.annotations" -}}
{{- $root := index . 0 -}}
{{- $all := dict -}}
{{- if eq $root.Release.Namespace "default" -}}
{{- $_ := set $all "checkov.io/skip21" "CKV_K8S_21=rendered without a namespace (checkov runs helm template so); installs go to their own namespace" -}}
{{- end -}}
{{- with index . 1 -}}
{{- $all = merge $all . -}}
{{- end -}}
{{- if $all -}}
annotations:
  {{- toYaml $all | nindent 2 }}
{{- end -}}
{{- end -}}
