{{- /*
Each component's configuration file (CRUCIBLE_CONFIG_FILE), in the field names of
crucible/settings.py. Ports, paths and identity come from the chart and win over the
free-form `settings` of each component. The Deployments carry a checksum of these
files, so a changed setting rolls the pods.
*/ -}}
{{- define "crucible.aggregatorConfig" -}}
{{- $chart := dict
  "listen" (printf "0.0.0.0:%v" .Values.aggregator.port)
  "metrics_listen" (printf "0.0.0.0:%v" .Values.aggregator.metricsPort)
  "state_dir" "/var/lib/crucible"
  "tls" (include "crucible.tlsSettings" . | fromYaml)
-}}
{{- merge $chart (deepCopy .Values.aggregator.settings) | toYaml -}}
{{- end -}}

{{- define "crucible.operatorConfig" -}}
{{- $chart := dict
  "aggregator" (include "crucible.operatorAggregatorAddress" .)
  "metrics_listen" (printf "0.0.0.0:%v" .Values.operator.metricsPort)
  "tls" (include "crucible.tlsSettings" . | fromYaml)
-}}
{{- with .Values.operator.serverName }}
{{- $_ := set $chart "server_name" . }}
{{- end }}
{{- if not .Values.operator.watchAllNamespaces }}
{{- $_ := set $chart "namespace" .Release.Namespace }}
{{- end }}
{{- merge $chart (deepCopy .Values.operator.settings) | toYaml -}}
{{- end -}}

{{- define "crucible.participantConfig" -}}
{{- $policy := .Values.participant.policy -}}
{{- $chart := dict
  "aggregator" .Values.participant.aggregator.address
  "metrics_listen" (printf "0.0.0.0:%v" .Values.participant.metricsPort)
  "tls" (include "crucible.tlsSettings" . | fromYaml)
  "datasets" .Values.participant.datasets
  "policy" (dict
    "accepted_runs" $policy.acceptedRuns
    "min_rows" $policy.minRows
    "max_rounds" $policy.maxRounds
    "max_local_epochs" $policy.maxLocalEpochs)
-}}
{{- with .Values.participant.aggregator.serverName }}
{{- $_ := set $chart "server_name" . }}
{{- end }}
{{- merge $chart (deepCopy .Values.participant.settings) | toYaml -}}
{{- end -}}
