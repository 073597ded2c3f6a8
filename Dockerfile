# The falbatch worker image: `docker compose up -d --scale worker=4`, or `docker run falbatch <command>`.
# Node 24 (LTS); the code itself still runs on Node >= 20.10 (package.json engines).

# Build: dev dependencies (TypeScript) present, as `npm ci` runs `prepare` (tsc -> dist/); then pruned.
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
COPY bin ./bin
# --include=dev: tsc is a dev dependency, needed here even when NODE_ENV=production is set at build time.
RUN npm ci --include=dev --no-audit --no-fund \
  && npm prune --omit=dev --no-audit --no-fund

# Run: the compiled code and production dependencies only, as the unprivileged `node` user.
FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The Lua scripts are read from src/redis-scripts/ as they are (tsc does not copy them to dist/).
COPY --from=build /app/src/redis-scripts ./src/redis-scripts
COPY --from=build /app/bin ./bin
USER node
ENTRYPOINT ["node", "bin/falbatch.js"]
CMD ["work"]
