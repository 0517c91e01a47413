"""voiced.devices — sound devices behind one AudioSource / AudioSink shape, and the playout pump.

    base       AudioSource / AudioSink protocols, the DeviceError tree, open_source / open_sink
    portaudio  sound cards through sounddevice (callbacks only copy into/out of an SpscRing)
    wav        WavSource (paced or fast), WavSink
    memory     MemorySource (also the demo's "say it once, then silence"), ClockedSink, MemorySink
    null       NullSink
    listing    list_devices() rows and render_device_table() for `voiced devices`
    playout    Playout: the async pump from the JitterBuffer into a sink (interrupts, level, timing)
"""
