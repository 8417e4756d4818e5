# Stand-in for the official nginx image, from Debian's nginx package, for
# machines that cannot reach Docker Hub. Used only by .ci/docker.sh. The
# stack's proxy runs docker/proxy/proxy.sh, which needs sh, getent and curl
# (all in the official Debian-based nginx image too).
ARG DEBIAN_BASE=ci/debian-minbase:bookworm
FROM ${DEBIAN_BASE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx curl \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \
 && nginx -v
STOPSIGNAL SIGQUIT
EXPOSE 80
CMD ["nginx", "-g", "daemon off;"]
