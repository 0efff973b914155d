// Railway Infrastructure as Code for the FlightSim P2P server: the current
// format (`railway config plan`, then `railway config apply`; `railway up`
// deploys). Same settings as ../railway.toml, the legacy Config as Code file
// Railway reads only until 2026-12-01. Use this file; keep railway.toml only
// while a service is still managed by it (`railway config migrate` moves it).
//
// Railway has no inbound UDP: QUIC/WebTransport (UDP 4433) and coturn cannot
// run here. Clients use the WebSocket fallback through Railway's TLS edge:
// wss://<service domain>/ws. See DEPLOYMENT.md, "Railway".
import { defineRailway, preserve, project, service } from "railway/iac";

export default defineRailway(() => {
  const server = service("flightsim-p2p", {
    build: { builder: "DOCKERFILE", dockerfilePath: "Dockerfile" },
    // The image's command plus --trust-proxy: every WebSocket arrives from
    // Railway's edge, so per-client limits take the address from X-Real-IP,
    // which the edge sets (a client cannot choose it). HTTP listens on
    // Railway's injected $PORT.
    start: "flightsim-p2p serve --trust-proxy --proxy-header x-real-ip",
    healthcheck: "/healthz",
    healthcheckTimeout: 60,
    deploy: { restartPolicyType: "ON_FAILURE", restartPolicyMaxRetries: 10 },
    // Exactly one replica: sessions live in one server's memory, so players of
    // one session must reach the same instance.
    replicas: 1,
    env: {
      // Optional, set with `railway variable set` (never written here): a
      // coturn on a UDP-capable host and its shared secret.
      FSP2P_TURN_SECRET: preserve(),
      FSP2P_STUN_URLS: preserve(),
      FSP2P_TURN_URLS: preserve(),
    },
  });

  return project("flightsim-p2p", {
    resources: [server],
  });
});
