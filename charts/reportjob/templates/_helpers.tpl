{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "reportjob.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, prefixed to the chart name unless it already contains it. */}}
{{- define "reportjob.fullname" -}}
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

{{/* chart-version for the helm.sh/chart label. */}}
{{- define "reportjob.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "reportjob.labels" -}}
helm.sh/chart: {{ include "reportjob.chart" . }}
{{ include "reportjob.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: reportjob
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels the Deployment, Service and PodDisruptionBudget select pods by. */}}
{{- define "reportjob.selectorLabels" -}}
app.kubernetes.io/name: {{ include "reportjob.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the controller runs as. */}}
{{- define "reportjob.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "reportjob.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The controller image: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "reportjob.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The image of the worker Jobs: workerImage, or the controller's own image. */}}
{{- define "reportjob.workerImage" -}}
{{- default (include "reportjob.image" .) .Values.workerImage }}
{{- end }}

{{/* The rules the controller needs in every namespace it watches (see rbac.yaml). */}}
{{- define "reportjob.namespacedRules" -}}
- apiGroups: ["reporting.dev"]
  resources: ["reportjobs"]
  verbs: ["get", "list", "watch", "patch", "update", "delete"]
- apiGroups: ["reporting.dev"]
  resources: ["reportjobs/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["reporting.dev"]
  resources: ["reportjobs/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
