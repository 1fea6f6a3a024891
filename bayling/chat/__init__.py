"""Talking to a checkpoint: the terminal chat (``bayling-chat``) and the OpenAI-compatible server (``bayling-serve``).

``model`` loads a checkpoint with its own chat template and stop tokens and streams answers; ``history``
keeps a conversation; ``terminal`` is the interactive loop; ``server`` the HTTP endpoint; ``vllm`` maps a
checkpoint onto the ``vllm serve`` command for GPUs. Nothing here imports the training or evaluation stages.
"""
