"""The demo's scripted customer-service calls: English, Mandarin and zh/en code-switched.

Each is spoken by espeak-ng (``beam_jobs.demo.speech``) onto agent and customer channels; the
script is the reference the demo scores the transcripts against.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from beam_jobs.demo.speech import ScriptedCall, Turn, scripted_call


class DemoScript(NamedTuple):
    call_id: str
    language: str  # en | zh | zh-en
    language_hint: str | None  # the event header a telephony system would set
    turns: tuple[Turn, ...]


A, C = "agent", "customer"
DEMO_SCRIPTS: Final = (
    DemoScript("demo-en-balance", "en", "en", (
        Turn(A, "Thank you for calling customer service, my name is Anna. How can I help you today?"),
        Turn(C, "Hi, I would like to check the balance of my savings account please."),
        Turn(A, "Sure. Can you please confirm your date of birth and the last four digits of your card?"),
        Turn(C, "It is the fourth of July, and the last four digits are one two three four."),
        Turn(A, "Thank you. Your balance is two thousand dollars. Is there anything else I can help you with?"),
        Turn(C, "No, that is all. Thank you very much."),
        Turn(A, "Thank you for calling. Have a nice day, goodbye."),
    )),
    DemoScript("demo-en-refund", "en", "en", (
        Turn(A, "Good morning, thank you for calling. How may I help you?"),
        Turn(C, "I was charged twice for my order last week and I would like a refund."),
        Turn(A, "I am sorry about that. Let me put you on hold for a moment while I check."),
        Turn(A, "Thank you for waiting. I can see the double charge and I have issued the refund.", 3.0),
        Turn(C, "Great, how long will it take?"),
        Turn(A, "It should arrive within five business days. Is there anything else?"),
        Turn(C, "No, thank you for your help. Goodbye."),
    )),
    DemoScript("demo-zh-card", "zh", "zh", (
        Turn(A, "您好，感谢致电客服中心，请问有什么可以帮您？"),
        Turn(C, "你好，我想查询一下我的信用卡账单。"),
        Turn(A, "好的，请您提供一下身份证号码的后四位。"),
        Turn(C, "后四位是一二三四。"),
        Turn(A, "谢谢您，您本月的账单是三千元。还有其他问题吗？"),
        Turn(C, "没有了，谢谢。"),
        Turn(A, "感谢您的来电，再见。"),
    )),
    DemoScript("demo-mix-upgrade", "zh-en", "zh", (
        Turn(A, "您好，这里是 customer service，请问有什么可以帮您？"),
        Turn(C, "我想 upgrade 我的 account 到 premium。"),
        Turn(A, "好的，premium 每个月是五十元，包括 free shipping。"),
        Turn(C, "OK，那就 upgrade 吧，谢谢。"),
        Turn(A, "已经帮您升级了，thank you，再见。"),
    )),
)  # fmt: skip


def demo_calls() -> list[ScriptedCall]:
    return [
        scripted_call(s.call_id, s.language, s.turns, language_hint=s.language_hint)
        for s in DEMO_SCRIPTS
    ]
