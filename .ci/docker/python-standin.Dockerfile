# Stand-in for python:3.11-slim, built on a debootstrap'ed Debian bookworm
# (whose python3 is 3.11) for machines that cannot reach Docker Hub.
# Used only by .ci/docker.sh; the build context holds ca/*.crt from the host.
ARG DEBIAN_BASE=ci/debian-minbase:bookworm
FROM ${DEBIAN_BASE}
ENV LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
COPY ca/ /usr/local/share/ca-certificates/
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-pip python3-venv \
 && update-ca-certificates \
 && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \
 && ln -sf /usr/bin/python3 /usr/local/bin/python \
 && ln -sf /usr/bin/pip3 /usr/local/bin/pip \
 && rm -rf /var/lib/apt/lists/* \
 && python --version && pip --version
CMD ["python3"]
