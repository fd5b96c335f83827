{{- define "vpn.name" -}}
{{- printf "%s-vpn" (.Release.Name | trunc 40 | trimSuffix "-") -}}
{{- end -}}

{{/* Labels of every object; call with (dict "ctx" $ "component" "server"). */}}
{{- define "vpn.labels" -}}
{{ include "vpn.selectorLabels" . }}
app.kubernetes.io/part-of: iotistic
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | quote }}
{{- end -}}

{{- define "vpn.selectorLabels" -}}
app.kubernetes.io/name: iotistic-vpn
app.kubernetes.io/instance: {{ .ctx.Release.Name | quote }}
app.kubernetes.io/component: {{ .component | quote }}
{{- end -}}

{{- define "vpn.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) | quote -}}
{{- end -}}

{{- define "vpn.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "vpn.name" .)) -}}
{{- end -}}

{{/* A generated secret value: the one already in the cluster (kept across upgrades), else a new random one. */}}
{{- define "vpn.generated" -}}
{{- $ctx := index . 0 -}}{{- $name := index . 1 -}}{{- $key := index . 2 -}}
{{- $existing := lookup "v1" "Secret" $ctx.Release.Namespace $name -}}
{{- if and $existing $existing.data (hasKey $existing.data $key) -}}
{{- index $existing.data $key -}}
{{- else -}}
{{- randAlphaNum 48 | b64enc -}}
{{- end -}}
{{- end -}}

{{/* The VPN_* environment both containers share. */}}
{{- define "vpn.env" -}}
- name: VPN_PKI_DIR
  value: /var/lib/iotistic-vpn/pki
- name: VPN_SERVER_HOST
  value: {{ required "serverHost is required: the name or address devices dial" .Values.serverHost | quote }}
- name: VPN_SERVER_PORT
  value: {{ .Values.vpn.port | quote }}
- name: VPN_SUBNET
  value: {{ .Values.vpn.subnet | quote }}
- name: VPN_NETMASK
  value: {{ .Values.vpn.netmask | quote }}
- name: VPN_CUSTOMER_BLOCK
  value: {{ .Values.vpn.customerBlock | quote }}
- name: VPN_REDIRECT_GATEWAY
  value: {{ .Values.vpn.redirectGateway | quote }}
- name: VPN_DEVICE_CERT_DAYS
  value: {{ .Values.vpn.deviceCertDays | quote }}
- name: VPN_CRL_DAYS
  value: {{ .Values.vpn.crlDays | quote }}
- name: VPN_STATUS_FILE
  value: /var/log/openvpn/status.log
- name: VPN_LOG_FILE
  value: /var/log/openvpn/openvpn.log
- name: VPN_MANAGEMENT_SOCKET
  value: /run/openvpn/management.sock
- name: VPN_KEY_PASSPHRASE
  valueFrom:
    secretKeyRef:
      name: {{ include "vpn.secretName" . }}
      key: key-passphrase
{{- end -}}

{{/* The init container and the certificate manager: root (the PKI and OpenVPN's management socket are root's;
OpenVPN reads the public parts as nobody) without any capability. */}}
{{- define "vpn.rootWithoutCapabilities" -}}
runAsUser: 0
runAsNonRoot: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
