{{- define "billing.name" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; call with (dict "ctx" $ "component" "api"). */}}
{{- define "billing.labels" -}}
{{ include "billing.selectorLabels" . }}
app.kubernetes.io/part-of: iotistic
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | quote }}
{{- end -}}

{{- define "billing.selectorLabels" -}}
app.kubernetes.io/name: iotistic-billing
app.kubernetes.io/instance: {{ .ctx.Release.Name | quote }}
app.kubernetes.io/component: {{ .component | quote }}
{{- end -}}

{{- define "billing.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) | quote -}}
{{- end -}}

{{- define "billing.podSecurityContext" -}}
{{- $ctx := index . 0 -}}{{- $user := index . 1 -}}
{{- $sc := deepCopy $ctx.Values.podSecurityContext -}}
{{- $_ := set $sc "runAsUser" $user -}}
{{- $_ := set $sc "runAsGroup" $user -}}
{{- $_ := set $sc "fsGroup" $user -}}
{{- toYaml $sc -}}
{{- end -}}

{{- define "billing.secretsName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "billing.name" .)) -}}
{{- end -}}

{{- define "billing.signingKeySecret" -}}
{{- .Values.signingKey.existingSecret | default (printf "%s-signing-key" (include "billing.name" .)) -}}
{{- end -}}

{{- define "billing.stripeSecret" -}}
{{- .Values.stripe.existingSecret | default (printf "%s-stripe" (include "billing.name" .)) -}}
{{- end -}}

{{- define "billing.stripeConfigured" -}}
{{- if or .Values.stripe.existingSecret .Values.stripe.apiKey .Values.stripe.webhookSecret -}}true{{- end -}}
{{- end -}}

{{- define "billing.workerServiceAccount" -}}
{{- printf "%s-worker" (include "billing.name" .) -}}
{{- end -}}

{{/* A generated secret value: the one already in the cluster (kept across upgrades), else a new random one. */}}
{{- define "billing.generated" -}}
{{- $ctx := index . 0 -}}{{- $name := index . 1 -}}{{- $key := index . 2 -}}
{{- $existing := lookup "v1" "Secret" $ctx.Release.Namespace $name -}}
{{- if and $existing $existing.data (hasKey $existing.data $key) -}}
{{- index $existing.data $key -}}
{{- else -}}
{{- randAlphaNum 48 | b64enc -}}
{{- end -}}
{{- end -}}

{{/* The settings of iotistic.billing.settings.BillingSettings that the API, the worker and migrations share. */}}
{{- define "billing.env" -}}
{{- if .Values.postgresql.enabled }}
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "billing.name" . }}-postgresql
      key: password
- name: BILLING_DATABASE_URL
  value: {{ printf "postgresql://%s:$(DB_PASSWORD)@%s-postgresql:5432/%s" .Values.postgresql.user (include "billing.name" .) .Values.postgresql.database | quote }}
{{- else }}
- name: BILLING_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "postgresql.external.urlSecret.name is required when postgresql.enabled is false" .Values.postgresql.external.urlSecret.name | quote }}
      key: {{ .Values.postgresql.external.urlSecret.key | quote }}
{{- end }}
- name: BILLING_DATA_DIR
  value: /var/lib/iotistic-billing
- name: LOG_LEVEL
  value: {{ .Values.settings.logLevel | quote }}
{{- end -}}

{{/* Everything the service itself needs (the migration Job needs only the database). */}}
{{- define "billing.serviceEnv" -}}
{{ include "billing.env" . }}
- name: BILLING_PRIVATE_KEY_FILE
  value: /etc/iotistic-billing/signing/private-key.pem
- name: BILLING_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "billing.secretsName" . }}
      key: jwt-secret
- name: BILLING_OPERATOR_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "billing.secretsName" . }}
      key: operator-token
- name: BILLING_INGRESS_DOMAIN
  value: {{ required "settings.ingressDomain is required (customer hosts are <id>.<domain>)" .Values.settings.ingressDomain | quote }}
- name: BILLING_CANCEL_GRACE_DAYS
  value: {{ .Values.settings.cancelGraceDays | quote }}
{{- with .Values.settings.prometheusUrl }}
- name: PROMETHEUS_URL
  value: {{ . | quote }}
{{- end }}
{{- if include "billing.stripeConfigured" . }}
- name: STRIPE_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "billing.stripeSecret" . }}
      key: api-key
- name: STRIPE_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "billing.stripeSecret" . }}
      key: webhook-secret
{{- end }}
{{- with .Values.stripe.apiBase }}
- name: STRIPE_API_BASE
  value: {{ . | quote }}
{{- end }}
{{- range $plan, $price := .Values.stripe.prices }}
{{- if $price }}
- name: {{ printf "STRIPE_PRICE_%s" (upper $plan) }}
  value: {{ $price | quote }}
{{- end }}
{{- end }}
{{- with .Values.stripe.checkoutSuccessUrl }}
- name: STRIPE_CHECKOUT_SUCCESS_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.stripe.checkoutCancelUrl }}
- name: STRIPE_CHECKOUT_CANCEL_URL
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "billing.volumeMounts" -}}
- name: signing-key
  mountPath: /etc/iotistic-billing/signing
  readOnly: true
- name: data
  mountPath: /var/lib/iotistic-billing
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "billing.volumes" -}}
- name: signing-key
  secret:
    secretName: {{ include "billing.signingKeySecret" . }}
    defaultMode: 0440
    items:
      - key: {{ .Values.signingKey.key | quote }}
        path: private-key.pem
- name: data
  emptyDir:
    sizeLimit: 256Mi
- name: tmp
  emptyDir:
    sizeLimit: 512Mi
{{- end -}}
