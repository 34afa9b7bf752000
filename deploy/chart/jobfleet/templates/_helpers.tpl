{{/* The chart's name, or nameOverride. */}}
{{- define "jobfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: fullnameOverride, or <release>-jobfleet, or the release name when it already says jobfleet. */}}
{{- define "jobfleet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object; the dispatcher's add its component. */}}
{{- define "jobfleet.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "jobfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jobfleet
{{- with .Values.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "jobfleet.labels" -}}
{{ include "jobfleet.commonLabels" . }}
app.kubernetes.io/component: dispatcher
{{- end }}

{{- define "jobfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: dispatcher
{{- end }}

{{/* The namespace of the ScaledJobs, job pods, Lease and avoid ConfigMap:
the release's. deploy/aws/jobfleet.yaml trusts one namespace for both
service accounts and scopes the workers' pod notes in S3 to it. */}}
{{- define "jobfleet.jobNamespace" -}}
{{- if and .Values.jobNamespace (ne .Values.jobNamespace .Release.Namespace) }}
{{- fail (printf "jobNamespace %q differs from the release namespace %q: the AWS stack (deploy/aws/jobfleet.yaml) trusts one namespace for the dispatcher's and the workers' service accounts; install the release into the namespace the jobs run in" .Values.jobNamespace .Release.Namespace) }}
{{- end }}
{{- .Release.Namespace }}
{{- end }}

{{- define "jobfleet.dispatcherServiceAccount" -}}
{{- .Values.serviceAccount.dispatcher.name | default (printf "%s-dispatcher" (include "jobfleet.fullname" .)) }}
{{- end }}

{{- define "jobfleet.workerServiceAccount" -}}
{{- .Values.serviceAccount.worker.name | default (printf "%s-worker" (include "jobfleet.fullname" .)) }}
{{- end }}

{{- define "jobfleet.triggerAuthentication" -}}
{{- .Values.keda.triggerAuthentication.name | default (printf "%s-sqs" (include "jobfleet.fullname" .)) }}
{{- end }}

{{/* The image reference: repository, then @digest or :tag (default the chart's appVersion). */}}
{{- define "jobfleet.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}
