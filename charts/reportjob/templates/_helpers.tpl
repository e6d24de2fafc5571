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

{{/* The controller image: repository@digest when a digest is set, else repository:tag, the tag
     defaulting to the chart's appVersion. */}}
{{- define "reportjob.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The image of the worker Jobs: workerImage, or the controller's own image. */}}
{{- define "reportjob.workerImage" -}}
{{- default (include "reportjob.image" .) .Values.workerImage }}
{{- end }}

{{/* The rules the controller needs in every namespace it watches (see rbac.yaml): exactly
     the calls it makes (tests/rbac.rs removes each rule in turn and sees it fail). It never
     reads pods' logs, Secrets or ConfigMaps, and it sets no blockOwnerDeletion (so it needs
     no reportjobs/finalizers). */}}
{{- define "reportjob.clusterRules" -}}
- apiGroups: ["reporting.dev"]
  # The ReportDatabases' budgets (cluster-scoped): read, and their status written.
  resources: ["reportdatabases"]
  verbs: ["list", "watch"]
- apiGroups: ["reporting.dev"]
  resources: ["reportdatabases/status"]
  verbs: ["patch"]
- apiGroups: [""]
  # Their labels only: which namespaces a ReportDatabase's namespaceSelector selects.
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{- define "reportjob.namespacedRules" -}}
- apiGroups: ["reporting.dev"]
  resources: ["reportjobs"]
  verbs: ["list", "watch", "patch", "delete"]
- apiGroups: ["reporting.dev"]
  resources: ["reportjobs/status"]
  verbs: ["patch"]
- apiGroups: ["reporting.dev"]
  # The runs of ReportSchedules (a rule of its own, so the RBAC test removes it alone).
  resources: ["reportjobs"]
  verbs: ["create"]
- apiGroups: ["reporting.dev"]
  resources: ["reportschedules"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["reporting.dev"]
  resources: ["reportschedules/status"]
  verbs: ["patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "list", "watch", "patch", "delete"]
- apiGroups: [""]
  # pods: the stage results (termination messages), watched into a cache; events: why a stage
  # Job cannot create its pods (its FailedCreate events: a quota, a LimitRange, admission).
  resources: ["pods", "events"]
  verbs: ["list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
