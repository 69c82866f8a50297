"""Local transcription: the bundled Whisper model, the executor, durable jobs, sealed transcripts."""
