"""Sample records written by the tests themselves: one encoder per input format, plus shared actions."""

from __future__ import annotations

import json

from actguide_plugin.core.actions import Action

ACTIONS = (
    Action("web_search", {"query": ["Höhe des Zugspitze-Gipfels", "東京タワー 高さ"]}),
    Action("web_visit", {"url": ["https://en.wikipedia.org/wiki/Zugspitze"], "goal": "height 🏔"}),
    Action("web_search", {"query": ["x"], "filters": {"lang": ["de", "ja"], "depth": {"max": 2, "strict": True}}}),
)


def openai_record(turns: list[list[Action]], answer_text: str = "<answer>2962 m</answer>", as_string: bool = True):
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "How high is the Zugspitze?"}]
    for t, turn in enumerate(turns):
        calls = [
            {
                "id": f"call_{t}_{j}",
                "type": "function",
                "function": {
                    "name": a.name,
                    "arguments": json.dumps(a.arguments, ensure_ascii=False) if as_string else a.arguments,
                },
            }
            for j, a in enumerate(turn)
        ]
        messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        messages += [{"role": "tool", "tool_call_id": c["id"], "content": "result"} for c in calls]
    messages.append({"role": "assistant", "content": f"<think>done</think>{answer_text}"})
    return {"id": "q1", "question": "How high is the Zugspitze?", "answer": "2962 m", "messages": messages}


def hermes_record(turns: list[list[Action]], answer_text: str = "<answer>2962 m</answer>"):
    messages = [{"role": "user", "content": "How high is the Zugspitze?"}]
    for turn in turns:
        blocks = "".join(
            f"<tool_call>\n{json.dumps({'name': a.name, 'arguments': a.arguments}, ensure_ascii=False)}\n</tool_call>"
            for a in turn
        )
        messages.append({"role": "assistant", "content": f"<think>look it up</think>\n{blocks}"})
        messages.append({"role": "user", "content": "<tool_response>result</tool_response>"})
    messages.append({"role": "assistant", "content": answer_text})
    return {"id": "q1", "question": "How high is the Zugspitze?", "answer": "2962 m", "messages": messages}


def react_record(turns: list[list[Action]], final: str = "Final Answer: 2962 m"):
    messages = [{"role": "user", "content": "How high is the Zugspitze?"}]
    for turn in turns:
        text = "".join(
            f"Thought: I should use {a.name}.\nAction: {a.name}\n"
            f"Action Input: {json.dumps(a.arguments, ensure_ascii=False, indent=2)}\n"
            for a in turn
        )
        messages.append({"role": "assistant", "content": text})
        messages.append({"role": "user", "content": "Observation: result"})
    messages.append({"role": "assistant", "content": f"Thought: I know it.\n{final}"})
    return {"id": "q1", "question": "How high is the Zugspitze?", "answer": "2962 m", "messages": messages}


def actions_record(actions: list[Action], as_string: bool = False):
    listed = [a.to_dict() for a in actions]
    return {
        "id": 7,
        "question": "How high is the Zugspitze?",
        "answer": "2962 m",
        "actions": json.dumps(listed, ensure_ascii=False) if as_string else listed,
    }


FANOUT = {
    "id": "f1",
    "question": "Who designed the Eiffel Tower and the Parthenon?",
    "answer": {"Parthenon": "Ictinus", "Eiffel Tower": "Gustave Eiffel"},
    "decomposition": [
        {
            "id": "b",
            "question": "Who designed the Parthenon?",
            "depends_on": ["a"],
            "decomposition": [],
            "evidence": {"title": "Parthenon", "url": "https://en.wikipedia.org/wiki/Parthenon"},
        },
        {
            "id": "a",
            "question": "Which landmarks?",
            "depends_on": [],
            "evidence": None,
            "decomposition": [
                {"id": "a1", "question": "Tour Eiffel ?", "depends_on": [], "evidence": {"title": "Eiffel Tower"}},
            ],
        },
        {"id": "c", "question": "Who is Jørn Utzon?", "depends_on": [], "evidence": {"title": "Jørn Utzon"}},
    ],
}


# verl's Search-R1 setup, as a verl user has it (examples/data_preprocess/preprocess_search_r1_dataset.py and
# examples/sglang_multiturn/config/tool_config/search_tool_config.yaml): the rows and the tool yaml
USER_PREFIX = "Answer the given question. You can call search. Question: "
SEARCH_R1_TOOLS = """\
tools:
  - class_name: {class_name}
    config: {{retrieval_service_url: "{url}", type: native}}
    tool_schema:
      type: function
      function:
        name: search
        description: Searches the web.
        parameters:
          type: object
          properties:
            query_list: {{type: array, item: {{type: string}}, description: queries}}
          required: [query_list]
"""


def search_r1_tool_yaml(class_name: str = "my_tools.search.SearchTool", url: str = "http://127.0.0.1:8000/retrieve"):
    """The user's tool yaml (attach reads it as data and never imports ``class_name``)."""
    return SEARCH_R1_TOOLS.format(class_name=class_name, url=url)


def search_r1_rows(questions: list[str], golds: list[list[str]] | None = None) -> list[dict]:
    """Rows as verl's examples/data_preprocess/preprocess_search_r1_dataset.py writes them (plus agent_name);
    row i's gold answers are ``golds[i]`` (default: ``gold i``, ``alt i``)."""
    golds = golds or [[f"gold {index}", f"alt {index}"] for index in range(len(questions))]
    return [
        {
            "data_source": "searchR1_nq",
            "agent_name": "tool_agent",
            "prompt": [
                {"role": "system", "content": "You are a helpful and harmless assistant."},
                {"role": "user", "content": USER_PREFIX + question},
            ],
            "ability": "fact-reasoning",
            "reward_model": {"style": "rule", "ground_truth": {"target": golds[index]}},
            "extra_info": {
                "index": index,
                "need_tools_kwargs": True,
                "question": question,
                "split": "train",
                "tools_kwargs": {
                    "search": {"create_kwargs": {"ground_truth": {"target": golds[index]}, "question": question}}
                },
            },
            "metadata": None,
        }
        for index, question in enumerate(questions)
    ]
