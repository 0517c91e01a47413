"""voiced.audio — the pure audio engine: synchronous, numpy, no I/O, no asyncio.

Time always comes in as an argument (`now_s`, `timestamp_s`), so every part runs under a fake clock.

    settings   VadSettings, JitterSettings, OpusSettings (pydantic, units in names)
    frames     the internal mic format (16 kHz mono int16, 20 ms), FrameAssembler, level_dbfs, fades
    vad        TurnDetector: webrtcvad + pre-roll, warm-up, silence/max-length end, barge-in mode
    codec      make_encoder / make_decoder: pcm, opus, g711a, g711u; CodecUnavailable
    resample   StreamResampler (soxr), resample()
    jitter     JitterBuffer: adaptive start-up target, burst-safe bounds, cancel/flush with fade
    ring       SpscRing: the bounded lock-free ring between the loop and a device callback
"""
