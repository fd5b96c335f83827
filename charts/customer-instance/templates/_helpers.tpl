{{/*
Names: one release per namespace (the billing service calls it "iotistic"), so resources are <release>-<part>.
*/}}
{{- define "ci.name" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "ci.customerId" -}}
{{- required "customer.id is required (the billing customer id)" .Values.customer.id -}}
{{- end -}}

{{/* Labels of every object; call with (dict "ctx" $ "component" "api"). */}}
{{- define "ci.labels" -}}
{{ include "ci.selectorLabels" . }}
app.kubernetes.io/part-of: iotistic
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | quote }}
iotistic.io/customer: {{ include "ci.customerId" .ctx | quote }}
iotistic.io/plan: {{ .ctx.Values.customer.plan | quote }}
{{- end -}}

{{- define "ci.selectorLabels" -}}
app.kubernetes.io/name: iotistic
app.kubernetes.io/instance: {{ .ctx.Release.Name | quote }}
app.kubernetes.io/component: {{ .component | quote }}
{{- end -}}

{{/* Annotations of every object: whose instance this is (free text, so JSON-quoted, never templated). */}}
{{- define "ci.annotations" -}}
{{- with .Values.customer.company -}}
iotistic.io/company: {{ . | toJson }}
{{- end -}}
{{- end -}}

{{- define "ci.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) | quote -}}
{{- end -}}

{{- define "ci.podSecurityContext" -}}
{{- $ctx := index . 0 -}}{{- $user := index . 1 -}}
{{- $sc := deepCopy $ctx.Values.podSecurityContext -}}
{{- $_ := set $sc "runAsUser" $user -}}
{{- $_ := set $sc "runAsGroup" $user -}}
{{- $_ := set $sc "fsGroup" $user -}}
{{- toYaml $sc -}}
{{- end -}}

{{- define "ci.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{- define "ci.secretsName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "ci.name" .)) -}}
{{- end -}}

{{- define "ci.dbSecretName" -}}
{{- if .Values.postgresql.enabled -}}
{{- printf "%s-postgresql" (include "ci.name" .) -}}
{{- else -}}
{{- required "postgresql.external.passwordSecret.name is required when postgresql.enabled is false" .Values.postgresql.external.passwordSecret.name -}}
{{- end -}}
{{- end -}}

{{/* The database settings of iotistic.core.settings.CloudSettings (DB_HOST & co; the password from a Secret). */}}
{{- define "ci.dbEnv" -}}
{{- if .Values.postgresql.enabled }}
- name: DB_HOST
  value: {{ printf "%s-postgresql" (include "ci.name" .) | quote }}
- name: DB_PORT
  value: "5432"
- name: DB_NAME
  value: {{ .Values.postgresql.database | quote }}
- name: DB_USER
  value: {{ .Values.postgresql.user | quote }}
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "ci.dbSecretName" . }}
      key: password
{{- else }}
- name: DB_HOST
  value: {{ required "postgresql.external.host is required when postgresql.enabled is false" .Values.postgresql.external.host | quote }}
- name: DB_PORT
  value: {{ .Values.postgresql.external.port | quote }}
- name: DB_NAME
  value: {{ .Values.postgresql.external.database | quote }}
- name: DB_USER
  value: {{ .Values.postgresql.external.user | quote }}
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "ci.dbSecretName" . }}
      key: {{ .Values.postgresql.external.passwordSecret.key | quote }}
{{- end }}
{{- end -}}

{{/* Settings every Iotistic process of the instance shares. */}}
{{- define "ci.commonEnv" -}}
{{ include "ci.dbEnv" . }}
- name: LOG_LEVEL
  value: {{ .Values.api.logLevel | quote }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "ci.secretsName" . }}
      key: redis-password
- name: REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s-redis:6379/0" (include "ci.name" .) | quote }}
{{- end -}}

{{/* The licence: the token from its Secret, the public key from a ConfigMap. */}}
{{- define "ci.licenseEnv" -}}
- name: IOTISTIC_LICENSE_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "ci.name" . }}-license
      key: license
- name: LICENSE_PUBLIC_KEY
  valueFrom:
    configMapKeyRef:
      name: {{ include "ci.name" . }}-license
      key: public-key.pem
{{- end -}}

{{/*
The pod annotation that rolls a workload when its licence changes: Deployments and StatefulSets restart
their pods when the pod template changes, so a new licence reaches the running instance without manual steps.
*/}}
{{- define "ci.licenseChecksum" -}}
checksum/license: {{ printf "%s\n%s" (required "license.token is required (the RS256 licence)" .Values.license.token) .Values.license.publicKey | sha256sum | quote }}
{{- end -}}

{{/* A generated secret value: the one already in the cluster (kept across upgrades), else a new random one. */}}
{{- define "ci.generated" -}}
{{- $ctx := index . 0 -}}{{- $name := index . 1 -}}{{- $key := index . 2 -}}
{{- $existing := lookup "v1" "Secret" $ctx.Release.Namespace $name -}}
{{- if and $existing $existing.data (hasKey $existing.data $key) -}}
{{- index $existing.data $key -}}
{{- else -}}
{{- randAlphaNum 48 | b64enc -}}
{{- end -}}
{{- end -}}

{{/* The writable volumes of an Iotistic container (its root file system is read-only). */}}
{{- define "ci.appVolumeMounts" -}}
- name: iotistic-data
  mountPath: /var/lib/iotistic
- name: iotistic-tmp
  mountPath: /tmp
{{- end -}}

{{- define "ci.appVolumes" -}}
- name: iotistic-data
  emptyDir:
    sizeLimit: 1Gi
- name: iotistic-tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end -}}

{{- define "ci.storageClass" -}}
{{- with .Values.storageClass }}
storageClassName: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Mosquitto: where the broker sync writes the files, where the broker writes its pid. */}}
{{- define "ci.mqttFiles" -}}/mosquitto/iotistic{{- end -}}
{{- define "ci.mqttPidFile" -}}/mosquitto/run/mosquitto.pid{{- end -}}

{{/* deploy/mosquitto/mosquitto.conf with this pod's paths (tests/charts checks that the rest agrees). */}}
{{- define "ci.mosquittoConf" -}}
# deploy/mosquitto/mosquitto.conf with this pod's paths (tests/charts checks that the rest agrees).
per_listener_settings false
allow_anonymous false
password_file {{ include "ci.mqttFiles" . }}/passwd
acl_file {{ include "ci.mqttFiles" . }}/acl
listener 1883
set_tcp_nodelay true
persistence true
persistence_location /mosquitto/data/
autosave_interval 60
persistent_client_expiration 30d
max_queued_messages 5000000
max_queued_bytes 0
queue_qos0_messages false
# Below the container's memory limit: past it the broker refuses new messages instead of being OOM-killed.
memory_limit {{ int64 .Values.mqtt.memoryLimitBytes }}
pid_file {{ include "ci.mqttPidFile" . }}
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
log_timestamp_format %Y-%m-%dT%H:%M:%S
connection_messages true
{{- end -}}
