"""What a call cost, in USD: genai-prices at the call's time, or an override.

- money.py: Decimal money and the Cost of a call
- overrides.py: [prices."<model>"] tables (per MTok, GPU hour, fees, "<model>@<tier>")
- plan.py: genai-prices' arithmetic as a few plain terms (the fast path)
- ids.py: which row of the price table a price is
- book.py: PriceBook, the one entry point
- describe.py: `tokentrail prices MODEL`
- table.py: the rows of tokentrail.prices (`tokentrail prices sync`)
"""

from .book import PriceBook
from .money import Cost
from .overrides import PriceOverride, parse_overrides
from .plan import genai_usage

__all__ = ["Cost", "PriceBook", "PriceOverride", "genai_usage", "parse_overrides"]
