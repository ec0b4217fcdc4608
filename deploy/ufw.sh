#!/bin/sh
# The same inbound rules as nftables.conf, for hosts managed with ufw.
set -eu
ufw allow 22/tcp comment 'ssh'
ufw allow 443/tcp comment 'strangers: HTTPS, WebSocket, TURN over TLS'
ufw allow 80/tcp comment 'strangers: ACME HTTP-01 and redirect'
ufw allow 3478/udp comment 'strangers: STUN/TURN over UDP'
ufw allow 3478/tcp comment 'strangers: STUN/TURN over TCP'
ufw allow 49152:65535/udp comment 'strangers: relay range'
ufw --force enable
