{{- define "kiln.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kiln.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kiln.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: kiln
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "kiln.agentSelector" -}}
app.kubernetes.io/name: {{ include "kiln.name" . }}-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kiln.serverSelector" -}}
app.kubernetes.io/name: {{ include "kiln.name" . }}-server
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kiln.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-agent" (include "kiln.fullname" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kiln.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret (keys username, password) the agents authenticate with; with
     server.enabled its password is also the server's token. */}}
{{- define "kiln.authSecretName" -}}
{{- if .Values.agent.basicAuth.existingSecret -}}
{{- .Values.agent.basicAuth.existingSecret -}}
{{- else if or .Values.agent.basicAuth.username .Values.server.enabled -}}
{{- printf "%s-push-auth" (include "kiln.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "kiln.pushUrl" -}}
{{- if .Values.server.enabled -}}
{{- printf "http://%s-server.%s.svc:%v" (include "kiln.fullname" .) .Release.Namespace .Values.server.port -}}
{{- else -}}
{{- .Values.agent.pushUrl -}}
{{- end -}}
{{- end -}}
