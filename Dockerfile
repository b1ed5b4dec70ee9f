# syntax=docker/dockerfile:1
# The runbook worker (and CLI) image. Build from the repository root:
#   docker build -t temporal-runbooks:0.1.0 .
# For reproducible builds pin the base by digest too:
#   docker build --build-arg NODE_IMAGE=node:24.22.3-bookworm-slim@sha256:<digest> .

# The Node.js release the test suite runs on (.node-version); bookworm carries PostgreSQL 15's client tools.
ARG NODE_IMAGE=node:24.22.3-bookworm-slim

# Production dependencies only, exactly as locked. tsx is one of them: the CLI runs the TypeScript
# sources directly (bin/runbook), so there is no compile step.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
# pg_dump and pg_restore for backups and restore tests (the same major version as the servers the
# activities talk to); the PostgreSQL 15 server binaries for the scratch instances restore tests start
# (no cluster is created at install: the image holds no database); pgBackRest for physical backups and
# point-in-time restores; nsupdate for RFC 2136 DNS updates; CA certificates for TLS to S3 and Temporal.
RUN mkdir -p /etc/postgresql-common/createcluster.d \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/no-main-cluster.conf \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 postgresql-15 pgbackrest bind9-dnsutils ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A numeric, non-root user, so Kubernetes can check runAsNonRoot without resolving names.
RUN groupadd --system --gid 10001 runbook \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin runbook
WORKDIR /app
ENV NODE_ENV=production \
    PG_BIN=/usr/lib/postgresql/15/bin
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
COPY --chown=root:root package.json package-lock.json tsconfig.json ./
COPY --chown=root:root .node-version ./
COPY --chown=root:root bin ./bin
COPY --chown=root:root scripts/lib ./scripts/lib
COPY --chown=root:root src ./src
# The application files belong to root and are read-only for the user that runs them.
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["/app/bin/runbook"]
CMD ["worker"]
