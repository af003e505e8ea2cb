# syntax=docker/dockerfile:1
# pyingress: the builder makes wheels for the package and every dependency (crypt-r, used for
# nginx-compatible htpasswd hashes, ships only as source and needs a compiler); the final image
# installs only those wheels, so no compiler or build tool ships.

FROM python:3.11 AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pyingress ./pyingress
RUN pip wheel --no-cache-dir --wheel-dir /dist .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    pip install --no-cache-dir --no-index /dist/*.whl \
    && groupadd --system --gid 10001 pyingress \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin pyingress
USER 10001:10001
EXPOSE 8080 8443 10254
ENTRYPOINT ["pyingress"]
CMD ["serve", "--in-cluster"]
