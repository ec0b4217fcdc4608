// @ts-check
// One WebRTC call with one stranger: trickle ICE both ways, the offerer
// restarts ICE when the connection fails (or stays disconnected), and
// getStats tells whether media goes direct or through the relay, over which
// transport, and the round-trip time.
//
// A call is made warm, before there is anyone to call: while the user waits
// in the queue its peer connection exists, with the local tracks attached,
// candidates gathered ahead (the ICE candidate pool) and an offer prepared,
// so that when the match comes the offerer sends its offer at once and the
// answerer answers at once.

/**
 * @typedef {object} CallStatus
 * @property {'connecting' | 'connected' | 'reconnecting' | 'failed'} state
 * @property {'direct' | 'relayed'} [path] once connected
 * @property {string} [transport] udp, tcp or tls (to the relay when relayed)
 * @property {number} [rttMs] round-trip time of the selected candidate pair
 * @property {import('./i18n.js').Msg} [reason] why it failed, for the user
 */

import { msg } from './i18n.js';

/** How long a first connection may take before we say it failed. */
const connectTimeoutMs = 20000;
/** How long "disconnected" may last before the offerer restarts ICE. */
const disconnectedGraceMs = 4000;
/** ICE restarts the offerer tries before giving up. */
const maxRestarts = 3;
/** How often the indicator's figures are refreshed. */
const statsIntervalMs = 1000;
/**
 * Candidates gathered ahead of the match: one transport (max-bundle), so
 * one pooled gathering session is enough.
 */
const candidatePoolSize = 1;

/**
 * @typedef {object} CallHandlers what a started call talks to
 * @property {'offerer' | 'answerer'} role
 * @property {(s: {sdp?: RTCSessionDescriptionInit, candidate?: RTCIceCandidateInit}) => void} send to the partner
 * @property {(stream: MediaStream) => void} onRemoteStream
 * @property {(s: CallStatus) => void} onStatus
 */

/** @param {{sdp?: RTCSessionDescriptionInit, candidate?: RTCIceCandidateInit}} _s */
const sendNothing = (_s) => {};

export class Call {
  /**
   * Makes the call's peer connection ready, before there is a partner: the
   * local tracks attached and candidates gathered ahead (with relayOnly,
   * relay candidates only: the browser gathers nothing else). Nothing is
   * sent until start.
   * @param {object} opts
   * @param {RTCIceServer[]} opts.iceServers
   * @param {boolean} opts.relayOnly relay candidates only ("Hide my IP")
   * @param {MediaStream | null} opts.stream local camera and microphone
   */
  constructor({ iceServers, relayOnly, stream }) {
    /** @type {'offerer' | 'answerer'} */
    this.role = 'answerer';
    this.iceServers = iceServers;
    this.relayOnly = relayOnly;
    this.hasTURN = iceServers.some((s) => [s.urls].flat().some((u) => /^turns?:/.test(u)));
    this.send = sendNothing;
    /** @type {(s: CallStatus) => void} */
    this.onStatus = () => {};
    /** @type {(stream: MediaStream) => void} */
    this.onRemoteStream = () => {};
    this.started = false;
    this.closed = false;
    this.everConnected = false;
    /** Set once we have told the user it failed: no more restarts. */
    this.gaveUp = false;
    this.restarts = 0;
    /** @type {Set<string>} candidate types gathered locally */
    this.gathered = new Set();
    /** @type {string[]} TURN/STUN errors while gathering */
    this.gatherErrors = [];
    /** @type {RTCIceCandidateInit[]} candidates that came before the remote description */
    this.pending = [];
    /** @type {CallStatus} */
    this.status = { state: 'connecting' };
    this.remote = new MediaStream();
    /**
     * Signals are applied one after the other, in the order they came (an
     * answer may arrive before our own offer is set locally).
     * @type {Promise<void>}
     */
    this.queue = Promise.resolve();

    const pc = new RTCPeerConnection({
      iceServers,
      iceTransportPolicy: relayOnly ? 'relay' : 'all',
      bundlePolicy: 'max-bundle',
      iceCandidatePoolSize: candidatePoolSize,
    });
    this.pc = pc;
    this.stream = stream;
    for (const track of stream?.getTracks() ?? []) {
      if (stream && (track.kind === 'audio' || track.kind === 'video')) pc.addTrack(track, stream);
    }
    /**
     * The first offer, prepared while waiting; unused if we answer.
     * @type {Promise<RTCSessionDescriptionInit | null>}
     */
    this.firstOffer = this.hasKinds() ? pc.createOffer().catch(() => null) : Promise.resolve(null);
    pc.onicecandidate = (ev) => {
      if (this.closed || !this.started) return;
      if (ev.candidate) {
        if (ev.candidate.type) this.gathered.add(ev.candidate.type);
        this.send({ candidate: ev.candidate.toJSON() });
      }
    };
    pc.onicecandidateerror = (ev) => {
      const e = /** @type {RTCPeerConnectionIceErrorEvent} */ (ev);
      if (this.gatherErrors.length < 8) this.gatherErrors.push(`${e.url}: ${e.errorCode} ${e.errorText}`);
    };
    pc.ontrack = (ev) => {
      if (this.closed) return;
      if (!this.remote.getTracks().includes(ev.track)) this.remote.addTrack(ev.track);
      this.onRemoteStream(this.remote);
    };
    pc.onconnectionstatechange = () => this.stateChanged();
    pc.oniceconnectionstatechange = () => this.stateChanged();

    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.connectTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.disconnectTimer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.statsTimer = undefined;
  }

  /** Whether the local stream gives both kinds, so the prepared offer is the one we would make. */
  hasKinds() {
    const kinds = this.pc.getTransceivers().map((t) => t.receiver.track.kind);
    return kinds.includes('audio') && kinds.includes('video');
  }

  /**
   * Whether this warm call can serve a match with these ICE servers: the
   * same servers (credentials aside: each match brings fresh ones, and ours
   * are still valid) and nothing started or closed yet.
   * @param {RTCIceServer[]} iceServers
   */
  fits(iceServers) {
    if (this.started || this.closed || this.pc.signalingState !== 'stable') return false;
    const urls = (/** @type {RTCIceServer[]} */ list) => list.map((s) => [s.urls].flat().join(' ')).join('\n');
    return urls(this.iceServers) === urls(iceServers);
  }

  /**
   * Starts the call with a partner: the offerer sends its offer at once,
   * the answerer applies the offer when it comes.
   * @param {CallHandlers} h
   */
  start({ role, send, onRemoteStream, onStatus }) {
    if (this.closed || this.started) return;
    this.started = true;
    this.role = role;
    this.send = send;
    this.onRemoteStream = onRemoteStream;
    this.onStatus = onStatus;
    this.connectTimer = setTimeout(() => this.giveUp(), connectTimeoutMs);
    if (role !== 'offerer') return;
    const kinds = this.pc.getTransceivers().map((t) => t.receiver.track.kind);
    for (const kind of ['audio', 'video']) {
      if (!kinds.includes(kind)) this.pc.addTransceiver(kind, { direction: 'recvonly' });
    }
    this.enqueue(async () => {
      const prepared = kinds.length === 2 ? await this.firstOffer : null;
      await this.sendOffer(prepared ?? (await this.pc.createOffer()));
    }).catch(() => this.giveUp());
  }

  /**
   * Runs f after every signal before it has been applied.
   * @param {() => Promise<void>} f
   */
  enqueue(f) {
    const p = this.queue.then(f);
    this.queue = p.catch(() => {});
    return p;
  }

  /**
   * Sends an offer and sets it locally. It is sent first: the partner works
   * on it while we set it, and an answer that comes back before we are done
   * waits its turn in the queue.
   * @param {RTCSessionDescriptionInit} offer
   */
  async sendOffer(offer) {
    if (this.closed) return;
    this.send({ sdp: { type: offer.type, sdp: offer.sdp } });
    await this.pc.setLocalDescription(offer);
  }

  /** @param {boolean} iceRestart */
  async offer(iceRestart) {
    await this.enqueue(async () => {
      if (this.closed) return;
      const offer = await this.pc.createOffer({ iceRestart });
      await this.sendOffer(offer);
    });
  }

  /**
   * Applies what the partner sent: an offer (first or ICE restart), an
   * answer, or a candidate.
   * @param {{sdp?: RTCSessionDescriptionInit, candidate?: RTCIceCandidateInit}} s
   */
  handleSignal(s) {
    return this.enqueue(() => this.apply(s));
  }

  /**
   * @param {{sdp?: RTCSessionDescriptionInit, candidate?: RTCIceCandidateInit}} s
   */
  async apply(s) {
    if (this.closed || !this.started) return;
    const pc = this.pc;
    if (s.sdp) {
      const d = s.sdp;
      if (d.type === 'offer' && this.role === 'answerer') {
        await pc.setRemoteDescription(d);
        if (this.closed) return;
        // Answer first, then set it locally and add what trickled in.
        const answer = await pc.createAnswer();
        if (this.closed) return;
        this.send({ sdp: { type: answer.type, sdp: answer.sdp } });
        await pc.setLocalDescription(answer);
        await this.addPending();
      } else if (d.type === 'answer' && this.role === 'offerer' && pc.signalingState === 'have-local-offer') {
        await pc.setRemoteDescription(d);
        await this.addPending();
      }
      return;
    }
    if (s.candidate) {
      if (!pc.remoteDescription) {
        if (this.pending.length < 100) this.pending.push(s.candidate);
        return;
      }
      await this.addCandidate(s.candidate);
    }
  }

  async addPending() {
    const list = this.pending;
    this.pending = [];
    for (const c of list) await this.addCandidate(c);
  }

  /** @param {RTCIceCandidateInit} c */
  async addCandidate(c) {
    try {
      await this.pc.addIceCandidate(c.candidate === '' ? undefined : c);
    } catch {
      // A candidate of an earlier ICE generation (before a restart), or one
      // the browser cannot use: neither is fatal.
    }
  }

  stateChanged() {
    if (this.closed || !this.started) return;
    const pc = this.pc;
    const st = pc.connectionState;
    const ice = pc.iceConnectionState;
    if (st === 'connected' || ice === 'connected' || ice === 'completed') {
      clearTimeout(this.connectTimer);
      clearTimeout(this.disconnectTimer);
      this.disconnectTimer = undefined;
      this.everConnected = true;
      this.gaveUp = false;
      this.restarts = 0;
      if (this.status.state !== 'connected') {
        this.setStatus({ ...this.status, state: 'connected', reason: undefined });
        this.refreshStats();
      }
      if (this.statsTimer === undefined) this.statsTimer = setInterval(() => this.refreshStats(), statsIntervalMs);
      return;
    }
    if (this.gaveUp) return;
    if (st === 'failed' || ice === 'failed') {
      clearTimeout(this.disconnectTimer);
      this.disconnectTimer = undefined;
      this.restart();
      return;
    }
    if ((st === 'disconnected' || ice === 'disconnected') && this.everConnected) {
      // Often transient (a Wi-Fi hiccup): say so, and only if it lasts does
      // the offerer restart ICE.
      this.setStatus({ ...this.status, state: 'reconnecting' });
      if (this.disconnectTimer === undefined) {
        this.disconnectTimer = setTimeout(() => {
          this.disconnectTimer = undefined;
          const now = this.pc.iceConnectionState;
          if (now === 'disconnected' || now === 'failed') this.restart();
        }, disconnectedGraceMs);
      }
    }
  }

  /** The offerer restarts ICE; the answerer waits for the new offer. */
  restart() {
    if (this.closed || this.gaveUp) return;
    if (this.restarts >= maxRestarts) {
      this.giveUp();
      return;
    }
    this.setStatus({ ...this.status, state: this.everConnected ? 'reconnecting' : 'connecting' });
    if (this.role !== 'offerer') return;
    this.restarts++;
    if (this.everConnected) {
      // Recovering a call gets a fresh window; a first connection keeps
      // the one it started with.
      clearTimeout(this.connectTimer);
      this.connectTimer = setTimeout(() => this.giveUp(), connectTimeoutMs);
    }
    this.offer(true).catch(() => this.giveUp());
  }

  giveUp() {
    if (this.closed || this.gaveUp) return;
    const st = this.pc.connectionState;
    if (st === 'connected') return;
    this.gaveUp = true;
    clearTimeout(this.connectTimer);
    clearTimeout(this.disconnectTimer);
    this.setStatus({ state: 'failed', reason: this.explain() });
  }

  /** Says what most likely went wrong, from what ICE gathered. */
  explain() {
    const relay = this.gathered.has('relay');
    if (this.relayOnly && !relay) {
      return msg(this.hasTURN ? 'call.hideIPRelayUnreachable' : 'call.hideIPNoRelay');
    }
    if (!relay) {
      return msg(this.hasTURN ? 'call.udpBlocked' : 'call.noRelay');
    }
    return msg('call.partnerBlocked');
  }

  /** @param {CallStatus} s */
  setStatus(s) {
    this.status = s;
    this.onStatus(s);
  }

  /** Reads the selected candidate pair and round-trip time. */
  async refreshStats() {
    if (this.closed) return;
    let report;
    try {
      report = await this.pc.getStats();
    } catch {
      return;
    }
    if (this.closed) return;
    const path = selectedPath(report);
    if (!path) return;
    if (this.status.state === 'connected' || this.status.state === 'reconnecting') {
      this.setStatus({ ...this.status, ...path });
    }
  }

  /**
   * Swaps the camera or microphone being sent, without renegotiation.
   * @param {MediaStreamTrack} track
   */
  async replaceTrack(track) {
    for (const sender of this.pc.getSenders()) {
      if (sender.track?.kind === track.kind) await sender.replaceTrack(track);
    }
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.connectTimer);
    clearTimeout(this.disconnectTimer);
    clearInterval(this.statsTimer);
    this.pc.onicecandidate = this.pc.ontrack = null;
    this.pc.onconnectionstatechange = this.pc.oniceconnectionstatechange = null;
    this.pc.close();
    for (const t of this.remote.getTracks()) t.stop();
  }
}

/**
 * Finds the selected candidate pair in a stats report and describes it.
 * @param {RTCStatsReport} report
 * @returns {{path: 'direct' | 'relayed', transport: string, rttMs?: number} | null}
 */
export function selectedPath(report) {
  /** @type {any} */
  let pair = null;
  report.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId) ?? pair;
  });
  if (!pair) {
    report.forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
    });
  }
  if (!pair) return null;
  const local = report.get(pair.localCandidateId);
  const remote = report.get(pair.remoteCandidateId);
  if (!local || !remote) return null;
  const relayed = local.candidateType === 'relay' || remote.candidateType === 'relay';
  const transport = String(local.candidateType === 'relay' ? local.relayProtocol ?? local.protocol : local.protocol ?? '');
  /** @type {{path: 'direct' | 'relayed', transport: string, rttMs?: number}} */
  const out = { path: relayed ? 'relayed' : 'direct', transport };
  if (typeof pair.currentRoundTripTime === 'number') out.rttMs = Math.round(pair.currentRoundTripTime * 1000);
  return out;
}

/**
 * @typedef {object} Reachability what ICE could gather on this network
 * @property {boolean} relay a relay candidate (our TURN answered)
 * @property {string[]} relayProtocols udp, tcp and/or tls
 * @property {boolean} srflx a server-reflexive candidate (STUN answered)
 */

/**
 * Gathers candidates with the given ICE servers, without calling anyone,
 * to learn whether our relay is reachable from here. It gives up after
 * timeoutMs.
 * @param {RTCIceServer[]} iceServers
 * @param {number} [timeoutMs]
 * @returns {Promise<Reachability>}
 */
export async function probeReachability(iceServers, timeoutMs = 5000) {
  /** @type {Reachability} */
  const found = { relay: false, relayProtocols: [], srflx: false };
  const pc = new RTCPeerConnection({ iceServers });
  try {
    pc.createDataChannel('probe');
    /** @type {Promise<void>} */
    const gathered = new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      pc.onicecandidate = (ev) => {
        const c = ev.candidate;
        if (!c) {
          clearTimeout(timer);
          resolve();
          return;
        }
        if (c.type === 'srflx') found.srflx = true;
        if (c.type === 'relay') {
          found.relay = true;
          // relayProtocol is in the WebRTC spec but not in TypeScript's DOM types.
          const proto = /** @type {RTCIceCandidate & { relayProtocol?: string | null }} */ (c).relayProtocol;
          if (proto && !found.relayProtocols.includes(proto)) found.relayProtocols.push(proto);
        }
      };
    });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered;
  } finally {
    pc.onicecandidate = null;
    pc.close();
  }
  return found;
}
