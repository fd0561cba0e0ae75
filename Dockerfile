# cdc-sync container image.
#   docker build -t cdc-sync .
#   docker run --rm -p 9464:9464 -v "$PWD/cdc-sync.yaml:/etc/cdc-sync/cdc-sync.yaml:ro" \
#     -v cdc-sync-data:/app/data -e MSSQL_URL -e SINK_URL --stop-timeout 40 cdc-sync
# The configuration file is read from /etc/cdc-sync/cdc-sync.yaml (CDC_SYNC_CONFIG);
# ${VAR} in it comes from the container's environment. Other commands:
#   docker run --rm -v "$PWD/cdc-sync.yaml:/etc/cdc-sync/cdc-sync.yaml:ro" cdc-sync validate

# ---- build: dev dependencies, TypeScript compile, bundle ------------------------------------------
FROM node:20-slim AS build
# Compilers for the native addon of the SQLite driver (better-sqlite3): built from source where its
# prebuilt binary cannot be downloaded, against the base image's own Node.js headers.
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
ENV npm_config_nodedir=/usr/local
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
# What tsconfig.build.json includes (test/container/compose.test.ts checks the two agree).
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bench ./bench
COPY test/support ./test/support
# The bundler step of the build (dist/cdc-sync.cjs) and the command line that runs it (dist/cdc-sync.mjs).
COPY tools/bundle.mjs tools/launcher.mjs ./tools/
RUN npm run build
# The production dependencies, native addons built: the runtime stage copies them as they are.
RUN npm prune --omit=dev && npm cache clean --force

# ---- runtime: production dependencies and the compiled CLI only ---------------------------
FROM node:20-slim AS runtime
# tini is PID 1: it forwards SIGTERM/SIGINT to node (which finishes the batch in flight,
# saves its checkpoint and exits 0) and reaps zombies.
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
# The CLI is one bundled file and its launcher; native addons and the drivers loaded on first use come from node_modules.
COPY --from=build /app/dist/cdc-sync.mjs /app/dist/cdc-sync.cjs /app/dist/cdc-sync.cjs.map ./dist/
# The T-SQL set-up files, for operators: docker run --rm --entrypoint cat cdc-sync sql/cdc/sync-queue.sql
COPY sql ./sql
# /app/data: file checkpoints and dead letters (./data/... in the configuration); mount a
# volume there. Owned by the unprivileged "node" user (uid 1000) of the base image, so a
# new named volume mounted there is writable too.
RUN mkdir -p /etc/cdc-sync /app/data && chown node:node /app/data
USER node

# Heap cap: measured 132 MiB (change log) and 135–142 MiB (postgres-wal) peak RSS draining 1M changes with the defaults
# (BENCHMARKS.md); raise it for a very large batch.maxSize or postgres-wal source transactions of 80,000+ rows.
# A young generation of 8 MB semi-spaces (the bin's shebang says the same) costs no throughput and ~15 MB of RSS less.
ENV CDC_SYNC_CONFIG=/etc/cdc-sync/cdc-sync.yaml \
    NODE_OPTIONS="--max-old-space-size=160 --max-semi-space-size=8" \
    CDC_SYNC_HEALTHCHECK_URL=http://127.0.0.1:9464/healthz \
    CDC_SYNC_DEMO_HOST=0.0.0.0
# One start now leaves V8's code cache for the bundle in /tmp (tools/launcher.mjs), made with the
# options above, so the container's first start is as quick as the next ones.
RUN node /app/dist/cdc-sync.mjs --help > /dev/null
EXPOSE 9464
# No curl in the slim image: node's fetch asks /healthz (set CDC_SYNC_HEALTHCHECK_URL when
# http.port is not 9464).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.CDC_SYNC_HEALTHCHECK_URL || 'http://127.0.0.1:9464/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/cdc-sync.mjs"]
CMD ["run"]
