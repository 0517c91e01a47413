"""voiced.mic — the microphone path: a chain of stages between the device and the conversation.

    stages   StageFrame, MicStage (the one interface), the stage registry, MicPath (the chain)
    turn     TurnDetectorStage: webrtcvad turn detection, always the last stage

A stage is one class with ``process(frame, events)`` and ``reset()``; an echo canceller, a noise
suppressor or a wake-word scorer goes in front of the turn detector by configuration
(``audio.stages``), without editing the conversation core.
"""
