"""voiced.devices — sound devices behind one AudioSource / AudioSink shape.

base       AudioSource / AudioSink protocols, the DeviceError tree
settings   DeviceSettings: which devices, block sizes, ring capacity
factory    open_source / open_sink by kind (portaudio, wav, memory, null)
portaudio  sound cards through sounddevice (callbacks only copy into/out of an SpscRing)
wav        WavSource (paced or fast), WavSink
memory     MemorySource (also the demo's "say it once, then silence"), ClockedSink, MemorySink
null       NullSink
listing    list_devices() rows and render_device_table() for `voiced devices`
"""
