"""An account's position in one symbol, kept up to date fill by fill (average cost).

A position carries its signed base `quantity` (long > 0, short < 0) and its signed `cost`,
the quote paid for what is open (quantity * average price; negative for a short). A fill in
the direction of the position, or on a flat one, opens: quantity and cost grow, so the
average price becomes the weighted average of the old position and the fill. A fill against
the position closes up to the open quantity: the closed part takes its share of the cost
with it and realises the difference from the fill price, (price - avg) * qty on a long and
(avg - price) * qty on a short. What is left of a fill that crosses zero opens a new
position at the fill price.

Exactness. The only division is a partial close's share of the cost; it is taken at 28
significant digits. Everything else is summed and multiplied exactly, and the position keeps
its cost rather than its average price, so whatever the division rounds moves between
realised and cost and never out of their difference. The OMS applies each fill once, as it
happens, so reading a position costs the same however many fills made it.
"""
from __future__ import annotations

from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, localcontext

from pydantic import BaseModel, ConfigDict

from atlas.core.values import ZERO, Side, StoredDec

# Sums and products are exact: no realistic amount comes near these bounds.
EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
DIVIDE = Context(prec=28)


class Holding(BaseModel):
    """What an account's fills in one symbol add up to."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    quantity: StoredDec = ZERO  # base; buys add, sells subtract
    cost: StoredDec = ZERO  # quote paid for the open quantity; quantity * avg_price, negative when short
    realised: StoredDec = ZERO  # quote
    bought: StoredDec = ZERO  # base bought in all
    sold: StoredDec = ZERO  # base sold in all
    fills: int = 0

    def after(self, side: Side, quantity: Decimal, price: Decimal) -> "Holding":
        """The holding once a fill of `quantity` at `price` on `side` is applied (see the module docstring)."""
        with localcontext(EXACT):
            signed = quantity if side is Side.BUY else -quantity
            held, cost, realised = self.quantity, self.cost, self.realised
            opening = signed
            if held * signed < 0:  # against the position: close what the fill can
                closing = signed if abs(signed) <= abs(held) else -held
                share = cost if closing == -held else DIVIDE.divide(cost * closing, -held)
                # Long: closing < 0 and share > 0, so realised gains |closing| * price - share;
                # short: closing > 0 and share < 0, so realised gains -share - closing * price.
                realised -= share + closing * price
                cost -= share
                held += closing
                opening = signed - closing
            cost += opening * price
            held += opening
            bought = self.bought + quantity if signed > 0 else self.bought
            sold = self.sold + quantity if signed < 0 else self.sold
        return Holding(quantity=held, cost=cost, realised=realised, bought=bought, sold=sold, fills=self.fills + 1)
