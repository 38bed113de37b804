"""Loaded by LLM Foundry through `code_paths` (in its own environment): the chat form of otlake's examples.

`preprocessing_fn: otlake_chat` turns each {prompt, response} line into a user turn and an assistant turn, so
LLM Foundry tokenizes them with the model's own chat template: the form `otlake eval --model DIR` asks an
instruct model in (the template's generation prompt, then the answer and its end-of-turn token).
"""

from llmfoundry.data.finetuning.tasks import dataset_constructor


@dataset_constructor.register("otlake_chat")
def otlake_chat(example: dict) -> dict:
    return {"messages": [{"role": "user", "content": example["prompt"]},
                         {"role": "assistant", "content": example["response"]}]}
