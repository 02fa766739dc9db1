"""The demo's world: Acme's products, teams, users, and the texts its LLM features read.

Shared by the LangChain and LlamaIndex traffic so both describe one company. Texts are built
from fixed sentence banks with a fixed seed: the same on every run, long enough to give
realistic token counts (a ~1,500-token support policy, ~600-token document chunks).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

# project -> team -> features (the attribution a dashboard breaks spend down by)
PROJECTS = {
    "support-bot": "customer support assistant and ticket triage",
    "docs-search": "question answering over the product documentation",
    "internal-tools": "engineering and marketing helpers",
}


@dataclass(frozen=True)
class Feature:
    name: str
    project: str
    team: str
    audience: str  # "customers" or "staff": whose user ids appear


FEATURES = {
    f.name: f
    for f in (
        Feature("support-chat", "support-bot", "support", "customers"),
        Feature("ticket-triage", "support-bot", "support", "customers"),
        Feature("order-agent", "support-bot", "commerce", "customers"),
        Feature("doc-search", "docs-search", "search", "customers"),
        Feature("code-review", "internal-tools", "platform", "staff"),
        Feature("summarize", "internal-tools", "growth", "staff"),
        Feature("internal-assistant", "internal-tools", "platform", "staff"),
    )
}

STAFF = ("alice", "bob", "carol", "dmitri", "eve", "farah", "gustavo", "hana")
CUSTOMERS = tuple(f"cust_{n:04d}" for n in (1042, 1187, 2203, 2291, 3310, 3478, 4011, 4502, 5120, 5933, 6021, 7788, 8090, 9154))


def pick_user(rng: random.Random, audience: str) -> str:
    """Zipf-like: a few users make most of the traffic (one customer much more than the rest)."""
    pool = STAFF if audience == "staff" else CUSTOMERS
    weights = [1.0 / (i + 1) ** 1.1 for i in range(len(pool))]
    return rng.choices(pool, weights=weights)[0]


_POLICY = (
    "Refunds are available within 30 days of purchase for unused items in their original packaging.",
    "Customers on the Pro plan may request a prorated refund when they downgrade mid-cycle.",
    "Never share another customer's order details, address or payment information.",
    "Verify the customer's identity with the email on the account before discussing an order.",
    "Shipping to the EU takes 3-5 business days; to the rest of the world 7-14 business days.",
    "Express shipping orders placed before 14:00 UTC leave the warehouse the same day.",
    "Escalate to a human agent when the customer mentions legal action, a safety issue or a chargeback.",
    "Be concise and friendly; use the customer's first name once; do not use emojis.",
    "Warranty claims need the order number and a photo of the defect.",
    "Gift cards cannot be refunded or exchanged for cash.",
    "Promotional codes cannot be combined, and expire at midnight UTC on the date shown.",
    "Subscriptions renew automatically; cancellation takes effect at the end of the billing period.",
    "Offer a replacement before a refund when an item arrived damaged.",
    "For account deletion requests, link the privacy centre and confirm within 30 days.",
    "Do not speculate about unreleased products or dates.",
    "Quote prices including VAT for customers in the EU and the UK.",
)
_DOCS = (
    "The API uses bearer tokens; create one under Settings, API keys, and keep it secret.",
    "Rate limits are 600 requests per minute per workspace, with bursts up to 1,000.",
    "Webhooks are signed with HMAC-SHA256; verify the signature header before trusting the body.",
    "Exports run in the background and are emailed as a CSV link valid for seven days.",
    "Single sign-on supports SAML 2.0 and OIDC on the Enterprise plan.",
    "Workspaces can hold up to 50 projects; archived projects do not count towards the limit.",
    "The audit log keeps every administrative action for 400 days.",
    "Data is stored in the region chosen at sign-up: Frankfurt, Virginia or Singapore.",
    "Invite teammates from the Members page; roles are owner, admin, editor and viewer.",
    "The mobile app syncs offline changes when the device reconnects.",
    "Deleting a workspace is permanent after a 14-day grace period.",
    "Use the sandbox environment to test integrations without affecting live data.",
    "Pagination uses opaque cursors; pass next_cursor until it is empty.",
    "Errors return a JSON body with a code, a message and a request id for support.",
)
_CODE = (
    "def apply_discount(order, code):",
    "    if code.expired:",
    "        raise ValueError('expired code')",
    "    total = sum(line.price * line.qty for line in order.lines)",
    "    return total - total * code.percent / 100",
    "for attempt in range(retries):",
    "    try:",
    "        return client.post(url, json=payload, timeout=5)",
    "    except TimeoutError:",
    "        time.sleep(2 ** attempt)",
    "query = f\"SELECT * FROM orders WHERE customer = '{customer_id}'\"",
    "cache[key] = value  # no eviction",
    "with open(path) as f: data = json.load(f)",
    "if user.is_admin or user.id == resource.owner_id:",
)
_MARKETING = (
    "Our spring release brings offline mode to every plan.",
    "Customers told us the new dashboard saves them an hour a week.",
    "Conversion on the pricing page rose 12% after the redesign.",
    "The webinar drew 1,400 sign-ups, a third of them from existing customers.",
    "Churn in the Starter plan is concentrated in the first 30 days.",
    "The partner programme now includes three regional resellers.",
    "Net revenue retention reached 118% for the quarter.",
    "Support volume fell 9% after the help centre rewrite.",
)

QUESTIONS = (
    "How do I rotate my API key without downtime?",
    "What are the rate limits for the API?",
    "How can I verify webhook signatures?",
    "Where is my data stored?",
    "Can I set up SSO with Okta?",
    "How long are exports available?",
    "How do I invite a teammate as a viewer?",
    "What happens when I delete a workspace?",
    "How does pagination work in the list endpoints?",
    "Is there a sandbox for testing?",
)
SUPPORT_OPENERS = (
    "Hi, my order hasn't arrived yet and it's been a week.",
    "I'd like a refund for the headphones I bought last month.",
    "Can I combine two promo codes on one order?",
    "My subscription renewed but I cancelled it, can you help?",
    "The item I received is damaged, what are my options?",
    "How do I delete my account?",
    "Do you ship express to Canada?",
    "I was charged twice for the same order.",
)
SUPPORT_FOLLOWUPS = (
    "Thanks. And how long will that take?",
    "Okay, can you send me the link?",
    "What if I already opened the box?",
    "Great, please go ahead.",
    "Is there anything else I need to do?",
)
TICKETS = (
    "App crashes when I upload a photo larger than 10 MB.",
    "Please cancel my subscription effective immediately.",
    "The invoice for March shows the wrong VAT number.",
    "Love the new dashboard! Any plans for a dark mode?",
    "I can't log in since the password reset, the link says expired.",
    "Your courier left the parcel in the rain and it is ruined.",
    "We need SSO for 300 users, who can I talk to about Enterprise?",
    "Export to CSV has been spinning for an hour.",
)
ORDER_QUESTIONS = (
    "Where is my order #{order}?",
    "Has order #{order} shipped yet?",
    "Can you change the delivery address on order #{order}?",
    "What's the status of #{order}?",
)
ASSISTANT_ASKS = (
    "Write a regex that matches ISO dates.",
    "Explain the difference between a mutex and a semaphore.",
    "Draft a short incident update for the status page.",
    "Suggest names for an internal metrics service.",
    "Convert this cron expression to plain English: 0 3 * * 1-5",
)


def _text(rng: random.Random, bank: tuple[str, ...], tokens: int) -> str:
    out: list[str] = []
    size = 0
    while size < tokens * 4:
        s = rng.choice(bank)
        out.append(s)
        size += len(s) + 1
    return " ".join(out)


@lru_cache(maxsize=1)
def support_policy() -> str:
    """The support assistant's system prompt: long and fixed, so providers can cache it."""
    rng = random.Random(1)
    return "You are Acme's customer support assistant. Follow the policy below.\n\n" + _text(rng, _POLICY, 1500)


@lru_cache(maxsize=1)
def doc_chunks() -> tuple[tuple[str, str], ...]:
    """(title, text) chunks of the product documentation, ~400-800 tokens each."""
    rng = random.Random(2)
    titles = (
        "Authentication", "Rate limits", "Webhooks", "Exports", "Single sign-on", "Workspaces",
        "Audit log", "Data residency", "Members and roles", "Mobile app", "Deleting data",
        "Sandbox", "Pagination", "Errors", "Billing", "Integrations", "Notifications", "Search",
    )  # fmt: skip
    return tuple((t, f"# {t}\n" + _text(rng, _DOCS, rng.randint(400, 800))) for t in titles)


def code_snippet(rng: random.Random) -> str:
    lines = [rng.choice(_CODE) for _ in range(rng.randint(40, 160))]
    return "\n".join(lines)


def marketing_doc(rng: random.Random) -> str:
    return _text(rng, _MARKETING, rng.randint(800, 3500))


def sentences(kind: str) -> tuple[str, ...]:
    return {"policy": _POLICY, "docs": _DOCS, "marketing": _MARKETING}[kind]
