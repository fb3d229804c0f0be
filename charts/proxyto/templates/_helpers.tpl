{{/* Chart name, truncated to 63 characters. */}}
{{- define "proxyto.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name. */}}
{{- define "proxyto.fullname" -}}
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

{{- define "proxyto.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "proxyto.labels" -}}
helm.sh/chart: {{ include "proxyto.chart" . }}
{{ include "proxyto.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "proxyto.selectorLabels" -}}
app.kubernetes.io/name: {{ include "proxyto.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "proxyto.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "proxyto.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the Secret with client credentials ("" when auth is off). */}}
{{- define "proxyto.authSecret" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else if or .Values.auth.htpasswd .Values.auth.users }}
{{- printf "%s-auth" (include "proxyto.fullname" .) }}
{{- end }}
{{- end }}

{{/* Whether a routes file is mounted; fails when more than one source is given. */}}
{{- define "proxyto.routes" -}}
{{- $n := 0 }}
{{- range (list .Values.routes.file .Values.routes.existingConfigMap .Values.routes.existingSecret) }}
{{- if . }}{{ $n = add1 $n }}{{ end }}
{{- end }}
{{- if gt $n 1 }}
{{- fail "routes: set one of file, existingConfigMap and existingSecret" }}
{{- end }}
{{- if gt $n 0 }}true{{ end }}
{{- end }}

{{/* Seconds Kubernetes waits after starting termination: preStop sleep + drain + margin. */}}
{{- define "proxyto.terminationGracePeriodSeconds" -}}
{{- add (int .Values.preStopSleepSeconds) (int .Values.drainTimeoutSeconds) (int .Values.terminationGraceExtraSeconds) }}
{{- end }}

{{/* A config value as an env string: lists joined with commas, whole numbers without exponent. */}}
{{- define "proxyto.envValue" -}}
{{- $v := . }}
{{- if kindIs "slice" $v }}
{{- join "," $v }}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) }}
{{- if eq $v (floor $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else }}
{{- $v }}
{{- end }}
{{- end }}

{{/* GOMEMLIMIT from .Values.goMemLimit: as written, or "N%" of resources.limits.memory, in MiB. */}}
{{- define "proxyto.goMemLimit" -}}
{{- $v := toString (.Values.goMemLimit | default "") }}
{{- if hasSuffix "%" $v }}
{{- $mem := toString (dig "limits" "memory" "" (.Values.resources | default dict)) }}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $mem }}
{{- $unit := trimPrefix $num $mem }}
{{- $mult := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 }}
{{- if or (not $num) (not (hasKey $mult $unit)) }}
{{- fail (printf "goMemLimit %q needs resources.limits.memory as a number with an optional unit (k, M, G, T, Ki, Mi, Gi, Ti), not %q" $v $mem) }}
{{- end }}
{{- $bytes := mulf (float64 $num) (get $mult $unit) }}
{{- printf "%dMiB" (int64 (floor (divf (mulf $bytes (float64 (trimSuffix "%" $v))) 104857600))) }}
{{- else }}
{{- $v }}
{{- end }}
{{- end }}

{{/* The pod template shared by the Deployment and the DaemonSet. */}}
{{- define "proxyto.podTemplate" -}}
{{- $authSecret := include "proxyto.authSecret" . -}}
{{- $routes := include "proxyto.routes" . -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName: a kubernetes.io/tls Secret with tls.crt and tls.key" }}
{{- end }}
{{- $tls := .Values.tls.enabled -}}
metadata:
  labels:
    {{- include "proxyto.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $ann := deepCopy (.Values.podAnnotations | default dict) }}
  {{- if and (not .Values.auth.existingSecret) (or .Values.auth.htpasswd .Values.auth.users) }}
  {{- $_ := set $ann "checksum/auth" (include (print $.Template.BasePath "/secret.yaml") . | sha256sum) }}
  {{- end }}
  {{- if .Values.upstreamCA }}
  {{- $_ := set $ann "checksum/upstream-ca" (include (print $.Template.BasePath "/configmap.yaml") . | sha256sum) }}
  {{- end }}
  {{- if .Values.routes.file }}
  {{- /* A changed routes file rolls the pods (see values.yaml, routes). */}}
  {{- $_ := set $ann "checksum/routes" (include (print $.Template.BasePath "/routes-configmap.yaml") . | sha256sum) }}
  {{- end }}
  {{- with $ann }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "proxyto.serviceAccountName" . }}
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.hostNetwork }}
  hostNetwork: true
  dnsPolicy: {{ .Values.dnsPolicy | default "ClusterFirstWithHostNet" }}
  {{- else if .Values.dnsPolicy }}
  dnsPolicy: {{ .Values.dnsPolicy }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ include "proxyto.terminationGracePeriodSeconds" . }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  {{- if .Values.nodeSysctls.enabled }}
  {{- if ne .Values.kind "DaemonSet" }}
  {{- fail "nodeSysctls writes node settings: it needs kind: DaemonSet (one pod per node)" }}
  {{- end }}
  initContainers:
    # Writes the node's kernel settings (docs/scaling.md) before the gateway
    # starts; /proc/sys is writable only from a privileged container.
    - name: node-sysctls
      image: "{{ .Values.nodeSysctls.image.repository }}:{{ .Values.nodeSysctls.image.tag }}"
      imagePullPolicy: {{ .Values.nodeSysctls.image.pullPolicy | default "IfNotPresent" }}
      command:
        - sh
        - -ec
        - |
          set_sysctl() {
            p=/proc/sys/$(echo "$1" | tr . /)
            if [ -e "$p" ]; then echo "$2" >"$p"; echo "$1 = $2"; else echo "$1: not on this node, skipped"; fi
          }
          {{- range $k, $v := .Values.nodeSysctls.settings }}
          set_sysctl {{ $k }} {{ $v | squote }}
          {{- end }}
      securityContext:
        privileged: true
        runAsNonRoot: false
        runAsUser: 0
        runAsGroup: 0
        readOnlyRootFilesystem: true
      resources:
        requests:
          cpu: 10m
          memory: 16Mi
        limits:
          memory: 32Mi
  {{- end }}
  containers:
    - name: proxyto
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      {{- with .Values.extraArgs }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      env:
        - name: PROXYTO_LISTEN
          value: ":{{ .Values.ports.proxy }}"
        - name: PROXYTO_ADMIN
          value: "{{ .Values.adminHost }}:{{ .Values.ports.admin }}"
        - name: PROXYTO_DRAIN_TIMEOUT
          value: "{{ .Values.drainTimeoutSeconds }}s"
        {{- range $k, $v := .Values.config }}
        {{- if and (not (kindIs "invalid" $v)) (ne (include "proxyto.envValue" $v) "") }}
        - name: PROXYTO_{{ $k | upper | replace "-" "_" }}
          value: {{ include "proxyto.envValue" $v | quote }}
        {{- end }}
        {{- end }}
        {{- if $authSecret }}
        {{- if or .Values.auth.htpasswd .Values.auth.existingSecret }}
        - name: PROXYTO_AUTH_HTPASSWD
          value: /etc/proxyto/auth/htpasswd
        {{- end }}
        {{- if and .Values.auth.users (not .Values.auth.existingSecret) }}
        - name: PROXYTO_AUTH_USERS
          valueFrom:
            secretKeyRef:
              name: {{ $authSecret }}
              key: users
        {{- end }}
        {{- end }}
        {{- with include "proxyto.goMemLimit" . }}
        - name: GOMEMLIMIT
          value: {{ . | quote }}
        {{- end }}
        {{- if .Values.upstreamCA }}
        - name: PROXYTO_UPSTREAM_CA
          value: /etc/proxyto/upstream-ca/ca.pem
        {{- end }}
        {{- if $routes }}
        - name: PROXYTO_ROUTES
          value: /etc/proxyto/routes/routes.yaml
        {{- end }}
        {{- if $tls }}
        - name: PROXYTO_TLS_LISTEN
          value: ":{{ .Values.ports.tls }}"
        - name: PROXYTO_TLS_CERT
          value: /etc/proxyto/tls/tls.crt
        - name: PROXYTO_TLS_KEY
          value: /etc/proxyto/tls/tls.key
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: proxy
          containerPort: {{ .Values.ports.proxy }}
          protocol: TCP
        - name: admin
          containerPort: {{ .Values.ports.admin }}
          protocol: TCP
        {{- if $tls }}
        - name: tls
          containerPort: {{ .Values.ports.tls }}
          protocol: TCP
        {{- end }}
      {{- with .Values.livenessProbe }}
      livenessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.readinessProbe }}
      readinessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if gt (int .Values.preStopSleepSeconds) 0 }}
      lifecycle:
        preStop:
          sleep:
            seconds: {{ .Values.preStopSleepSeconds }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      {{- if or $authSecret .Values.upstreamCA $routes $tls }}
      volumeMounts:
        {{- if and $authSecret (or .Values.auth.htpasswd .Values.auth.existingSecret) }}
        - name: auth
          mountPath: /etc/proxyto/auth
          readOnly: true
        {{- end }}
        {{- if .Values.upstreamCA }}
        - name: upstream-ca
          mountPath: /etc/proxyto/upstream-ca
          readOnly: true
        {{- end }}
        {{- if $routes }}
        - name: routes
          mountPath: /etc/proxyto/routes
          readOnly: true
        {{- end }}
        {{- if $tls }}
        - name: tls
          mountPath: /etc/proxyto/tls
          readOnly: true
        {{- end }}
      {{- end }}
  {{- if or $authSecret .Values.upstreamCA $routes $tls }}
  volumes:
    {{- if and $authSecret (or .Values.auth.htpasswd .Values.auth.existingSecret) }}
    - name: auth
      secret:
        secretName: {{ $authSecret }}
        defaultMode: 0444
        items:
          - key: htpasswd
            path: htpasswd
    {{- end }}
    {{- if .Values.upstreamCA }}
    - name: upstream-ca
      configMap:
        name: {{ include "proxyto.fullname" . }}-upstream-ca
        defaultMode: 0444
    {{- end }}
    {{- if .Values.routes.existingSecret }}
    - name: routes
      secret:
        secretName: {{ .Values.routes.existingSecret }}
        defaultMode: 0444
        items:
          - key: routes.yaml
            path: routes.yaml
    {{- else if $routes }}
    - name: routes
      configMap:
        name: {{ .Values.routes.existingConfigMap | default (printf "%s-routes" (include "proxyto.fullname" .)) }}
        defaultMode: 0444
        items:
          - key: routes.yaml
            path: routes.yaml
    {{- end }}
    {{- if $tls }}
    - name: tls
      secret:
        secretName: {{ .Values.tls.secretName }}
        defaultMode: 0444
        items:
          - key: tls.crt
            path: tls.crt
          - key: tls.key
            path: tls.key
    {{- end }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
