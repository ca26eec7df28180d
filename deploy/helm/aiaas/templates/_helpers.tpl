{{/*
Names: "<release>" when the release name already says aiaas, else "<release>-aiaas"; each
component adds its own suffix (aiaas-gateway, prod-aiaas-worker...). The alert rules match
Deployments named (<anything>-)aiaas-gateway|worker|trainer.
*/}}
{{- define "aiaas.fullname" -}}
{{- if contains "aiaas" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-aiaas" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aiaas.labels" -}}
app.kubernetes.io/name: aiaas
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway") */}}
{{- define "aiaas.selectorLabels" -}}
app.kubernetes.io/name: aiaas
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "aiaas.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "aiaas.gpuImage" -}}
{{- printf "%s:%s" .Values.gpuImage.repository (.Values.gpuImage.tag | default (printf "%s-cuda" .Chart.AppVersion)) -}}
{{- end -}}

{{- define "aiaas.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "aiaas.fullname" .) -}}
{{- end -}}

{{/* The pod-level part of the restricted Pod Security Standard, and what every pod shares. */}}
{{- define "aiaas.podSpecCommon" -}}
automountServiceAccountToken: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* The container-level part of the restricted Pod Security Standard. */}}
{{- define "aiaas.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{/*
The environment of every aiaas process: settings inline, secrets from the Secret.
(dict "root" $ "device" "cpu"); device is optional (AIAAS_DEVICE, for the workers).
*/}}
{{- define "aiaas.env" -}}
env:
  - name: AIAAS_ENV
    value: production
  # The metrics name every tenant's models: a port of their own, reached by Prometheus only.
  - name: AIAAS_METRICS_PORT
    value: "9100"
  - name: AIAAS_METRICS_HOST
    value: 0.0.0.0
  - name: AIAAS_ARTIFACTS_URL
    value: /data/artifacts
  # The root filesystem is read-only: library caches under $HOME go to the /tmp volume.
  - name: HOME
    value: /tmp
  {{- with .device }}
  - name: AIAAS_DEVICE
    value: {{ . }}
  {{- end }}
  {{- range $name, $value := .root.Values.config }}
  - name: {{ $name }}
    value: {{ $value | quote }}
  {{- end }}
envFrom:
  - secretRef:
      name: {{ include "aiaas.secretName" .root }}
{{- end -}}

{{/*
Holds a pod until the database schema is at its image's newest migration (the migration hook
runs it), or past it: a newer release migrated first, and expand/contract migrations keep this
one working on that schema. (dict "root" $ "image" "...")
*/}}
{{- define "aiaas.waitForSchema" -}}
{{- if .root.Values.migrations.waitForSchema -}}
initContainers:
  - name: wait-for-schema
    image: {{ .image }}
    imagePullPolicy: {{ .root.Values.image.pullPolicy }}
    command:
      - sh
      - -c
      - |
        while :; do
          out=$(alembic -c /app/alembic.ini current 2>&1)
          case "$out" in
            *"(head)"*) echo "database schema is at this release's newest migration"; exit 0 ;;
            *"locate revision"*) echo "database schema is newer than this release"; exit 0 ;;
          esac
          echo "waiting for the migration: $(printf '%s\n' "$out" | tail -n 1)"
          sleep 5
        done
    {{- include "aiaas.env" (dict "root" .root) | nindent 4 }}
    {{- include "aiaas.containerSecurityContext" .root | nindent 4 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
    resources:
      requests: {cpu: 50m, memory: 256Mi}
      limits: {memory: 512Mi}
{{- end }}
{{- end -}}

{{- define "aiaas.volumes" -}}
volumes:
  - name: artifacts
    persistentVolumeClaim:
      claimName: {{ .Values.artifacts.existingClaim | default (printf "%s-artifacts" (include "aiaas.fullname" .)) }}
  - name: tmp
    emptyDir:
      sizeLimit: 1Gi
{{- end -}}

{{- define "aiaas.volumeMounts" -}}
volumeMounts:
  - name: artifacts
    mountPath: /data/artifacts
  - name: tmp
    mountPath: /tmp
{{- end -}}

{{/* Spread over zones and nodes where there are several; never refuse a node for it. */}}
{{- define "aiaas.topologySpread" -}}
topologySpreadConstraints:
  {{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: 1
    topologyKey: {{ $key }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "aiaas.selectorLabels" $ | nindent 8 }}
    matchLabelKeys: ["pod-template-hash"]
  {{- end }}
{{- end -}}

{{/* A checksum of the chart's Secret: pods roll when it changes. */}}
{{- define "aiaas.secretChecksum" -}}
{{- if not .Values.secrets.existingSecret -}}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end -}}
