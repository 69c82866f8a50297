// The microphone as the live transcription wants it: 16 kHz mono, 16-bit little-endian PCM,
// in frames of about 250 ms (posted to the page, which sends them as binary WebSocket frames),
// and the sound's level about ten times a second for the page's meter.
//
// The input (the audio context's rate, 44.1 or 48 kHz mostly) is mixed to mono and brought
// down to 16 kHz by averaging the input samples that fall in each output sample's interval:
// a box filter, enough of a low-pass for speech recognition.

class Pcm16Downsampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.rate = opts.targetRate || 16000;
    this.step = sampleRate / this.rate; // input samples per output sample (>= 1 in practice)
    this.frameLength = Math.round((this.rate * (opts.frameMs || 250)) / 1000);
    this.levelLength = Math.round(this.rate / 10);
    this.frame = new Int16Array(this.frameLength);
    this.filled = 0;
    this.sum = 0; // input samples of the output sample being made
    this.count = 0;
    this.pos = 0;
    this.levelSquares = 0;
    this.levelCount = 0;
    this.stopped = false;
    this.port.onmessage = (event) => {
      if (event.data === "stop" && !this.stopped) {
        this.stopped = true;
        this.post(); // what is left, then say so
        this.port.postMessage({ done: true });
      }
    };
  }

  post() {
    if (this.filled === 0) return;
    const pcm = this.frame.slice(0, this.filled);
    this.port.postMessage({ pcm: pcm.buffer }, [pcm.buffer]);
    this.filled = 0;
  }

  emit(value) {
    const v = value > 1 ? 1 : value < -1 ? -1 : value;
    this.frame[this.filled++] = v < 0 ? v * 0x8000 : v * 0x7fff;
    this.levelSquares += v * v;
    this.levelCount += 1;
    if (this.levelCount >= this.levelLength) {
      this.port.postMessage({ level: Math.sqrt(this.levelSquares / this.levelCount) });
      this.levelSquares = 0;
      this.levelCount = 0;
    }
    if (this.filled === this.frameLength) this.post();
  }

  process(inputs) {
    if (this.stopped) return false;
    const input = inputs[0];
    if (!input || input.length === 0) return true; // no source connected (yet)
    const channels = input.length;
    const length = input[0].length;
    for (let i = 0; i < length; i++) {
      let v = 0;
      for (let c = 0; c < channels; c++) v += input[c][i];
      this.sum += v / channels;
      this.count += 1;
      this.pos += 1;
      if (this.pos >= this.step) {
        this.pos -= this.step;
        this.emit(this.sum / this.count);
        this.sum = 0;
        this.count = 0;
      }
    }
    return true;
  }
}

registerProcessor("pcm16-downsampler", Pcm16Downsampler);
