{{/*
Names, labels and the pieces every component's pod shares. A component is one of
aggregator, operator or participant; helpers that need it take a dict with the root
context as "root" and the component's name as "component".
*/}}

{{- define "crucible.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* RELEASE-crucible, or the release name alone when it already contains the chart's. */}}
{{- define "crucible.fullname" -}}
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

{{/* The name of one component's objects: RELEASE-crucible-COMPONENT. */}}
{{- define "crucible.componentName" -}}
{{- printf "%s-%s" (include "crucible.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "crucible.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "crucible.selectorLabels" -}}
app.kubernetes.io/name: {{ include "crucible.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "crucible.labels" -}}
helm.sh/chart: {{ include "crucible.chart" . }}
{{ include "crucible.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: crucible
crucible.dev/role: {{ .Values.role }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component ({root, component}). */}}
{{- define "crucible.componentSelectorLabels" -}}
{{ include "crucible.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of one component's objects ({root, component}). */}}
{{- define "crucible.componentLabels" -}}
{{ include "crucible.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The operator's ServiceAccount, which its RBAC binds and its pods run as. */}}
{{- define "crucible.operatorServiceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "crucible.componentName" (dict "root" . "component" "operator")) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "crucible.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret with tls.crt, tls.key and ca.crt of one component ({root, component}). */}}
{{- define "crucible.tlsSecretName" -}}
{{- $values := index .root.Values .component -}}
{{- default (printf "%s-tls" (include "crucible.componentName" .)) $values.tls.secretName -}}
{{- end -}}

{{/* The in-cluster Service of the aggregator. */}}
{{- define "crucible.aggregatorServiceName" -}}
{{- include "crucible.componentName" (dict "root" . "component" "aggregator") -}}
{{- end -}}

{{/* DNS names for the aggregator's certificate: in-cluster names, exposure, extras. */}}
{{- define "crucible.aggregatorDnsNames" -}}
{{- $service := include "crucible.aggregatorServiceName" . -}}
{{- $namespace := .Release.Namespace -}}
{{- $names := list $service (printf "%s.%s" $service $namespace) (printf "%s.%s.svc" $service $namespace) (printf "%s.%s.svc.%s" $service $namespace .Values.clusterDomain) -}}
{{- with .Values.aggregator.exposure.hostname -}}
{{- $names = append $names . -}}
{{- end -}}
{{- $names = concat $names .Values.aggregator.tls.dnsNames | uniq -}}
{{- toYaml $names -}}
{{- end -}}

{{/* host:port the operator dials: the in-cluster Service unless set. */}}
{{- define "crucible.operatorAggregatorAddress" -}}
{{- default (printf "%s:%v" (include "crucible.aggregatorServiceName" .) .Values.aggregator.port) .Values.operator.aggregatorAddress -}}
{{- end -}}

{{/* The port of participant.aggregator.address, for the NetworkPolicy. */}}
{{- define "crucible.participantAggregatorPort" -}}
{{- splitList ":" .Values.participant.aggregator.address | last -}}
{{- end -}}

{{/* The pod-level pieces every component shares ({root, component}): security
context, pull secrets, scheduling. */}}
{{- define "crucible.podSpecCommon" -}}
{{- $root := .root -}}
{{- $values := index $root.Values .component -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The volumes every component mounts ({root, component}): its TLS files, its
configuration file, and /tmp, since the root filesystem is read-only. */}}
{{- define "crucible.commonVolumes" -}}
- name: tls
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ include "crucible.tlsSecretName" . }}
          items:
            - key: tls.crt
              path: tls.crt
            - key: tls.key
              path: tls.key
            {{- if not .root.Values.certificates.caSecretName }}
            - key: ca.crt
              path: ca.crt
            {{- end }}
      {{- with .root.Values.certificates.caSecretName }}
      - secret:
          name: {{ . }}
          items:
            - key: ca.crt
              path: ca.crt
      {{- end }}
- name: config
  configMap:
    name: {{ include "crucible.componentName" . }}-config
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end -}}

{{- define "crucible.commonVolumeMounts" -}}
- name: tls
  mountPath: /etc/crucible/tls
  readOnly: true
- name: config
  mountPath: /etc/crucible/config
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* The container's environment: the configuration file, logs, and extraEnv. */}}
{{- define "crucible.commonEnv" -}}
{{- $values := index .root.Values .component -}}
- name: CRUCIBLE_CONFIG_FILE
  value: /etc/crucible/config/config.yaml
{{- with $values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The TLS settings every component's configuration file starts with. */}}
{{- define "crucible.tlsSettings" -}}
certificate: /etc/crucible/tls/tls.crt
key: /etc/crucible/tls/tls.key
ca: /etc/crucible/tls/ca.crt
{{- end -}}

{{/* Container settings every component shares ({root, component}). */}}
{{- define "crucible.containerCommon" -}}
image: {{ include "crucible.image" .root }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
args:
  - --log-level={{ .root.Values.logLevel }}
  - {{ .component }}
securityContext:
  {{- toYaml .root.Values.securityContext | nindent 2 }}
{{- end -}}
