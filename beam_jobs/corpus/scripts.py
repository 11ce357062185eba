"""What the evaluation corpus says: customer-service calls in Mandarin, English and zh/en
code-switching, single utterances with spoken identity numbers, and domain-term utterances.

Each text is the exact reference as a transcript should write it. Numbers are written as the
call centre would log them, some in digits and some in Chinese numerals; long digit strings
(phones, IDs, cards) are spoken digit by digit either way (``beam_jobs.corpus.voices``). The ID
numbers carry valid ISO 7064 checksums and the card numbers pass Luhn, so PII redaction must
catch them, and none belongs to anybody (test prefixes, made-up dates).
"""

from __future__ import annotations

from typing import Final, NamedTuple


class Line(NamedTuple):
    role: str  # agent | customer
    text: str
    pause_before_s: float = 0.6  # silence after the previous line (negative: overtalk)


class CallScript(NamedTuple):
    call_id: str
    language: str  # zh | en | zh-en
    topic: str
    lines: tuple[Line, ...]


class Sentence(NamedTuple):
    utterance_id: str
    language: str
    text: str


A, C = "agent", "customer"

#: Test identity numbers used in the scripts (checksums valid; not real people).
MOBILES: Final = ("13812345678", "15987654321")
IDS: Final = ("110105199003071239", "310115198506120042")
CARDS: Final = ("6222021234567894", "6217001234567890122")

CALLS: Final = (
    CallScript("zh-bill", "zh", "billing complaint, identity check, hold", (
        Line(A, "您好，欢迎致电客服中心，请问有什么可以帮您？"),
        Line(C, "你好，我这个月的话费多扣了一百元，我想问一下是怎么回事。"),
        Line(A, "非常抱歉给您带来不便，为了核实您的身份，请您提供一下手机号码。"),
        Line(C, f"我的手机号码是{MOBILES[0]}。"),
        Line(A, "好的，请再提供一下您的身份证号码。"),
        Line(C, "身份证号码是一一零一零五一九九零零三零七一二三九。"),
        Line(A, "谢谢，您的身份已经核实。请您稍等，我帮您查询一下。"),
        Line(A, "感谢您的耐心等待，多扣的是增值业务费，我已经帮您退回了。", 4.0),
        Line(C, "好的，那太好了，谢谢你。"),
        Line(A, "请问还有其他问题吗？"),
        Line(C, "没有了，谢谢。"),
        Line(A, "感谢您的来电，祝您生活愉快，再见。"),
    )),
    CallScript("zh-broadband", "zh", "angry complaint about an outage", (
        Line(A, "您好，感谢致电宽带客服，请问有什么可以帮您？"),
        Line(C, "我家的宽带已经断了三天了，一直没有人来修，我非常不满意，我要投诉！"),
        Line(A, "非常抱歉，我理解您的心情。请问您的联系电话是多少？"),
        Line(C, "一五九八七六五四三二一。"),
        Line(A, "好的，请您提供一下身份证后四位，核实一下身份。"),
        Line(C, "后四位是零零四二。"),
        Line(A, "谢谢，我已经为您提交了加急维修，师傅今天下午会联系您。"),
        Line(C, "好吧，希望这次真的能修好。"),
        Line(A, "再次向您表示歉意，请问还有其他问题吗？"),
        Line(C, "没有了。"),
        Line(A, "感谢您的来电，再见。"),
    )),
    CallScript("zh-card", "zh", "lost bank card, card and ID numbers", (
        Line(A, "您好，这里是银行客服中心，请问有什么可以帮您？"),
        Line(C, "你好，我的银行卡丢了，想要挂失。"),
        Line(A, "好的，请您提供一下卡号。"),
        Line(C, f"卡号是{CARDS[0]}。"),
        Line(A, "请再提供一下您的身份证号码，核实一下身份。"),
        Line(C, f"我的身份证号码是{IDS[1]}。"),
        Line(A, "谢谢，您的卡已经挂失成功，新卡会在七个工作日内寄到。"),
        Line(C, "好的，谢谢。"),
        Line(A, "请问还有其他问题吗？"),
        Line(C, "没有了。"),
        Line(A, "感谢您的来电，再见。"),
    )),
    CallScript("mix-upgrade", "zh-en", "plan upgrade, code-switched", (
        Line(A, "您好，这里是 customer service，请问有什么可以帮您？"),
        Line(C, "我想 upgrade 我的 account 到 premium。"),
        Line(A, "好的，premium 每个月是五十元，包括 free shipping。"),
        Line(C, "OK，那就 upgrade 吧，谢谢。"),
        Line(A, "已经帮您升级了，thank you，再见。"),
    )),
    CallScript("mix-app", "zh-en", "app login problem, code-switched", (
        Line(A, "您好，欢迎致电客服中心，请问有什么可以帮您？"),
        Line(C, "我的 app 登录不了，一直显示 error。"),
        Line(A, "不好意思，请问您用的是 iPhone 还是 Android？"),
        Line(C, "是 iPhone，版本是最新的。"),
        Line(A, "好的，请您先 log out，然后重新 login 一下。"),
        Line(C, "OK，现在可以了，thank you。"),
        Line(A, "不客气，感谢您的来电，再见。"),
    )),
    CallScript("en-balance", "en", "balance check, identity check", (
        Line(A, "Thank you for calling customer service, my name is Anna. How can I help you today?"),
        Line(C, "Hi, I would like to check the balance of my savings account please."),
        Line(A, "Sure. Can you please confirm your date of birth and the last four digits of your card?"),
        Line(C, "It is the fourth of July, and the last four digits are one two three four."),
        Line(A, "Thank you. Your balance is two thousand dollars. Is there anything else I can help you with?"),
        Line(C, "No, that is all. Thank you very much."),
        Line(A, "Thank you for calling. Have a nice day, goodbye."),
    )),
    CallScript("en-refund", "en", "refund with a hold", (
        Line(A, "Good morning, thank you for calling. How may I help you?"),
        Line(C, "I was charged twice for my order last week and I would like a refund."),
        Line(A, "I am sorry about that. Let me put you on hold for a moment while I check."),
        Line(A, "Thank you for waiting. I can see the double charge and I have issued the refund.", 4.0),
        Line(C, "Great, how long will it take?"),
        Line(A, "It should arrive within five business days. Is there anything else?"),
        Line(C, "No, thank you for your help. Goodbye."),
    )),
)  # fmt: skip

#: Single Mandarin utterances: identity numbers in digits and in Chinese numerals, holds,
#: complaints, closings.
SENTENCES: Final = (
    Sentence("zh-mobile-digits", "zh", f"我的手机号是{MOBILES[1]}。"),
    Sentence("zh-mobile-numerals", "zh", "您的联系电话是一三八一二三四五六七八，对吗？"),
    Sentence("zh-id-digits", "zh", f"我的身份证号码是{IDS[0]}。"),
    Sentence("zh-id-numerals", "zh", "身份证号码是三一零一一五一九八五零六一二零零四二。"),
    Sentence("zh-card-digits", "zh", f"我的银行卡号是{CARDS[1]}。"),
    Sentence("zh-hold", "zh", "请您稍等一下，我马上帮您查询。"),
    Sentence("zh-complaint", "zh", "你们的服务太差了，我等了一个小时都没有人接电话。"),
    Sentence("zh-refund", "zh", "退款会在三到五个工作日内退回您的原支付账户。"),
    Sentence("zh-address", "zh", "我想修改一下收货地址，改成北京市朝阳区建国路八十八号。"),
    Sentence("zh-closing", "zh", "感谢您的耐心等待，祝您生活愉快，再见。"),
)  # fmt: skip

#: Domain terms of a carrier, the biasing scenario's ``--asr_domain_terms``: every term the
#: domain sentences say, and terms they never say (a real list is a catalogue, not one call),
#: so a correction that rewrites ordinary words into unsaid terms costs errors.
DOMAIN_TERMS: Final = ("FlexiData", "SmartHome Pro", "CloudPay", "VoLTE", "eSIM", "IPTV",
                       "畅享套餐", "亲情号", "携号转网", "副卡", "天翼云盘",
                       "全家享套餐", "流量日包", "HomeGuard", "FTTR")  # fmt: skip
DOMAIN_SENTENCES: Final = (
    Sentence("term-flexidata", "zh-en", "请问 FlexiData 流量包一个月多少钱？"),
    Sentence("term-smarthome", "zh-en", "我家的 SmartHome Pro 路由器连不上网了。"),
    Sentence("term-cloudpay", "zh-en", "您可以在 CloudPay 里面直接交话费。"),
    Sentence("term-volte", "zh-en", "VoLTE 高清通话要怎么开通？"),
    Sentence("term-esim", "zh-en", "我想给手表开通 eSIM 服务。"),
    Sentence("term-changxiang", "zh", "我想办理畅享套餐，每个月有多少流量？"),
    Sentence("term-qinqing", "zh", "我想把我妈妈的号码设成亲情号。"),
    Sentence("term-xiehao", "zh", "办理携号转网需要带什么证件？"),
    Sentence("term-fuka", "zh", "副卡的流量可以和主卡一起用吗？"),
    Sentence("term-tianyi", "zh", "天翼云盘的会员怎么退订？"),
    Sentence("term-iptv", "zh-en", "我家的 IPTV 机顶盒没有信号。"),
)  # fmt: skip
