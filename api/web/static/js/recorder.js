// "Record from this device": the microphone streamed to the live transcription of the running
// phase (WS /api/v1/groups/{g}/sessions/{s}/phases/{phase}/live, see api/routes/live.py).
//
// getUserMedia → AudioContext → pcm-worklet.js (16 kHz mono PCM16 frames of ~250 ms) → the
// WebSocket, signed in by the page's session cookie and its CSRF token. Without AudioWorklet,
// MediaRecorder's webm/opus chunks go instead. The transcript panel reloads by itself from the
// server's events: the segments the socket reports need nothing here.
import { csrfToken } from "./api.js";

const panel = document.getElementById("recorder");
const FRAME_MS = 250;
const QUEUE_MAX = (30 * 1000) / FRAME_MS; // audio kept while (re)connecting: 30 s
const RETRIES = 5;
const RETRY_MS = 2000;

function text(key, values = {}) {
  const template = panel.getAttribute(`data-m-${key}`) || key;
  return template.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

const button = panel && panel.querySelector("#recorder-button");
const meter = panel && panel.querySelector("#recorder-level");
const stateLine = panel && panel.querySelector("#recorder-state");
const problemLine = panel && panel.querySelector("#recorder-problem");
let current = null; // the Recording under way
let notice = false; // something to read on the panel (a refusal, an ended phase)

function say(message) {
  stateLine.textContent = message;
}

function problem(message) {
  problemLine.textContent = message || "";
  problemLine.hidden = !message;
  if (message) {
    notice = true;
    panel.hidden = false; // readable even once no phase runs
  }
}

function pressed(on) {
  button.setAttribute("aria-pressed", on ? "true" : "false");
  button.textContent = text(on ? "stop" : "start");
  panel.classList.toggle("recording", on);
}

function level(value) {
  if (meter) meter.value = Math.min(1, value * 4); // speech's RMS is mostly under 0.25
}

function phaseOnTheBar() {
  const bar = document.getElementById("phase-panel");
  if (!bar || !bar.querySelector(".phasebar")) return null; // not loaded yet: unknown
  const running = bar.querySelector('li[aria-current="step"]');
  return running ? running.id.replace(/^phase-/, "") : "";
}

function showPanel() {
  const phase = phaseOnTheBar();
  const running = phase === null ? panel.dataset.phase : phase;
  panel.hidden = !running && !current && !notice;
}

async function runningPhase() {
  // The service's own view (the page may have missed an event); the phase bar if it is out.
  try {
    const res = await fetch(panel.dataset.session, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (res.ok) {
      const view = await res.json();
      return view.current_phase ? view.current_phase.phase : "";
    }
  } catch (_) {
    /* unreachable: the phase bar says what it knows */
  }
  return phaseOnTheBar() || "";
}

function microphoneProblem(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "PermissionDeniedError") return text("denied");
  if (name === "SecurityError") return text(window.isSecureContext ? "denied" : "insecure");
  if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
    return text("no_device");
  }
  if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") {
    return text("busy");
  }
  return text("mic_failed", { detail: (err && err.message) || String(err) });
}

function webmType() {
  if (typeof MediaRecorder === "undefined") return null;
  for (const type of ["audio/webm;codecs=opus", "audio/webm"]) {
    if (MediaRecorder.isTypeSupported(type)) return type;
  }
  return null;
}

class Recording {
  constructor(stream, phase) {
    this.stream = stream;
    this.phase = phase;
    this.format = "pcm16";
    this.queue = [];
    this.ws = null;
    this.ready = false;
    this.everReady = false;
    this.stopping = false;
    this.finished = false;
    this.retries = 0;
    this.chain = Promise.resolve(); // MediaRecorder chunks, sent in order
  }

  // --- the sound -----------------------------------------------------------------------------

  async open() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (Context) {
      this.context = new Context();
      if (this.context.state === "suspended") await this.context.resume();
      this.source = this.context.createMediaStreamSource(this.stream);
    }
    if (this.context && this.context.audioWorklet && typeof AudioWorkletNode !== "undefined") {
      try {
        await this.context.audioWorklet.addModule(panel.dataset.worklet);
        this.node = new AudioWorkletNode(this.context, "pcm16-downsampler", {
          numberOfInputs: 1,
          numberOfOutputs: 1,
          outputChannelCount: [1],
          processorOptions: { targetRate: 16000, frameMs: FRAME_MS },
        });
        this.node.port.onmessage = (event) => this.fromWorklet(event.data);
        this.source.connect(this.node);
        this.node.connect(this.context.destination); // silent: it keeps the node running
        return;
      } catch (err) {
        console.warn("AudioWorklet unavailable, trying MediaRecorder", err);
        this.node = null;
      }
    }
    const type = webmType();
    if (!type) throw new Error(text("unsupported"));
    this.format = "webm";
    this.mimeType = type;
    if (this.context) {
      this.analyser = this.context.createAnalyser();
      this.analyser.fftSize = 2048;
      this.source.connect(this.analyser);
      const samples = new Float32Array(this.analyser.fftSize);
      this.levelTimer = setInterval(() => {
        this.analyser.getFloatTimeDomainData(samples);
        let sum = 0;
        for (const v of samples) sum += v * v;
        level(Math.sqrt(sum / samples.length));
      }, 100);
    }
  }

  fromWorklet(data) {
    if (data.level !== undefined) level(data.level);
    if (data.pcm) this.send(data.pcm);
    if (data.done && this.onDrained) this.onDrained();
  }

  // A MediaRecorder per connection: its first chunk holds the header the server needs.
  startRecorder() {
    this.recorder = new MediaRecorder(this.stream, { mimeType: this.mimeType });
    this.recorder.ondataavailable = (event) => {
      if (!event.data || event.data.size === 0) return;
      const blob = event.data;
      this.chain = this.chain.then(async () => this.send(await blob.arrayBuffer()));
    };
    this.recorder.start(FRAME_MS);
  }

  stopRecorder() {
    const recorder = this.recorder;
    this.recorder = null;
    if (!recorder || recorder.state === "inactive") return Promise.resolve();
    return new Promise((resolve) => {
      recorder.addEventListener("stop", () => resolve(this.chain), { once: true });
      recorder.stop();
    });
  }

  send(buffer) {
    if (this.ready && this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(buffer);
    } else if (this.format === "pcm16" && !this.finished) {
      this.queue.push(buffer); // while connecting: sent once the server is ready
      if (this.queue.length > QUEUE_MAX) this.queue.shift();
    }
  }

  // Whatever the microphone still holds, then nothing more from it.
  async drain() {
    if (this.node) {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, 1000);
        this.onDrained = () => {
          clearTimeout(timer);
          resolve();
        };
        this.node.port.postMessage("stop");
      });
    }
    await this.stopRecorder();
  }

  release() {
    clearInterval(this.levelTimer);
    for (const track of this.stream.getTracks()) track.stop();
    if (this.node) this.node.port.onmessage = null;
    if (this.context && this.context.state !== "closed") this.context.close().catch(() => {});
    level(0);
  }

  // --- the connection ------------------------------------------------------------------------

  connect() {
    if (this.finished || this.stopping) return; // stopped while waiting to reconnect
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const path = `${panel.dataset.live}${encodeURIComponent(this.phase)}/live`;
    const ws = new WebSocket(`${scheme}//${window.location.host}${path}`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.ready = false;
    say(text(this.everReady ? "lost" : "connecting"));
    ws.onopen = () => ws.send(JSON.stringify({ type: "start", csrf: csrfToken(), format: this.format }));
    ws.onmessage = (event) => {
      if (ws === this.ws) this.message(event.data);
    };
    ws.onclose = (event) => {
      if (ws === this.ws) this.closed(event.code, event.reason);
    };
  }

  message(raw) {
    let body;
    try {
      body = JSON.parse(raw);
    } catch (_) {
      return;
    }
    if (body.type === "ready") {
      this.ready = true;
      this.everReady = true;
      this.retries = 0;
      problem("");
      say(text("recording", { speaker: body.speaker }));
      if (this.format === "webm") this.startRecorder();
      const waiting = this.queue;
      this.queue = [];
      for (const buffer of waiting) this.ws.send(buffer);
      if (this.stopping) this.end(); // stop was pressed while connecting
    } else if (body.type === "error") {
      problem(text("error", { detail: body.detail }));
    }
    // "segments" and "final": the transcript panel reloads from the server's events.
  }

  closed(code, reason) {
    this.ready = false;
    const unexpected = ![1000, 1003, 1008, 1009, 1011, 4408, 4409, 4413].includes(code);
    if (unexpected && !this.stopping && this.everReady && this.retries < RETRIES) {
      this.retries += 1; // a dropped connection: the microphone goes on, and so do we
      say(text("lost"));
      if (this.format === "webm") this.stopRecorder();
      setTimeout(() => this.connect(), RETRY_MS);
      return;
    }
    this.finish();
    const outcome = {
      1000: () => say(text("stopped")),
      4409: () => problem(text("phase_ended")),
      1008: () => problem(text("refused", { reason })),
      4408: () => problem(text("idle_closed")),
      4413: () => problem(text("too_long")),
      1003: () => problem(text("undecodable", { reason })),
      1009: () => problem(text("undecodable", { reason })),
      1011: () => problem(text("failed")),
    }[code];
    if (outcome) outcome();
    else if (this.stopping && !this.everReady) say(text("idle"));
    else problem(text("gone"));
    if (code !== 1000) say(text("idle"));
  }

  // --- the person's moves --------------------------------------------------------------------

  async stop() {
    if (this.stopping) return;
    this.stopping = true;
    say(text("stopping"));
    button.setAttribute("aria-busy", "true");
    await this.drain();
    this.release();
    if (this.ready) this.end();
    else if (!this.ws || this.ws.readyState > WebSocket.OPEN) this.closed(1000, ""); // between tries
    // else: connecting; `ready` sends what is queued, then the end.
  }

  end() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "end" }));
  }

  finish() {
    if (this.finished) return;
    this.finished = true;
    this.queue = [];
    this.stopRecorder();
    this.release();
    if (current === this) current = null;
    pressed(false);
    button.removeAttribute("aria-busy");
    showPanel();
  }
}

let starting = false; // asking for the microphone: a second click waits

async function start() {
  if (starting) return;
  starting = true;
  try {
    await begin();
  } finally {
    starting = false;
  }
}

async function begin() {
  problem("");
  notice = false;
  if (!window.isSecureContext) return problem(text("insecure"));
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || typeof WebSocket === "undefined") {
    return problem(text("unsupported"));
  }
  button.setAttribute("aria-busy", "true");
  try {
    const phase = await runningPhase();
    if (!phase) return problem(text("no_phase"));
    say(text("asking"));
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
      });
    } catch (err) {
      say(text("idle"));
      return problem(microphoneProblem(err));
    }
    const recording = new Recording(stream, phase);
    try {
      await recording.open();
    } catch (err) {
      recording.release();
      say(text("idle"));
      return problem(err && err.message === text("unsupported") ? err.message : microphoneProblem(err));
    }
    current = recording;
    pressed(true);
    recording.connect();
  } finally {
    button.removeAttribute("aria-busy");
  }
}

if (panel && button) {
  button.addEventListener("click", () => (current ? current.stop() : start()));
  document.body.addEventListener("htmx:afterSettle", (event) => {
    if (event.target && event.target.id === "phase-panel") showPanel();
  });
  window.addEventListener("pagehide", () => {
    if (current) current.release(); // the server keeps what it was sent
  });
}
