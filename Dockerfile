# The falbatch worker image: `docker compose up -d worker`, or `docker run falbatch <command>`.
FROM node:20-slim
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
COPY bin ./bin
RUN npm ci --no-audit --no-fund && npm prune --omit=dev
USER node
ENTRYPOINT ["node", "bin/falbatch.js"]
CMD ["work"]
