"""The load contract of every source entity: columns, types, key, version, cursor.

Declared as data, one block per source, mirroring docs/sources/*.md. The loader derives
``raw.<entity>`` and ``quarantine.<entity>`` from these; locked columns are the ones marts
rely on, so a type change there blocks the batch instead of reaching a mart.
"""

from __future__ import annotations

from cem_warehouse.load.contracts import Column as C
from cem_warehouse.load.contracts import EntityContract

TS = "timestamptz"
_AUDIT = (C("created_at", TS), C("updated_at", TS, nullable=False, locked=True))


def _crm(entity: str, key: str, *columns: C, **options) -> EntityContract:
    return EntityContract(
        source="crm",
        entity=entity,
        columns=(*columns, *_AUDIT),
        natural_key=(key,),
        version_column="updated_at",
        cursor_column="updated_at",
        **options,
    )


def _sales(entity: str, key: str, *columns: C, **options) -> EntityContract:
    return EntityContract(
        source="sales",
        entity=entity,
        columns=(*columns, *_AUDIT),
        natural_key=(key,),
        version_column="updated_at",
        cursor_column="updated_at",
        **options,
    )


# Survey exports are immutable files: the file a row came from is its version, so a replay
# in a later export supersedes the earlier row whatever order the files are loaded in.
SOURCE_FILE = C("_source_file", "text", nullable=False)


def _surveys(entity: str, key: str, *columns: C, **options) -> EntityContract:
    return EntityContract(
        source="surveys",
        entity=entity,
        columns=(*columns, SOURCE_FILE),
        natural_key=(key,),
        version_column="_source_file",
        cursor_column=None,
        **options,
    )


CRM = [
    _crm(
        "customers",
        "customer_id",
        C("customer_id", "bigint", nullable=False, locked=True),
        C("email"),
        C("first_name"),
        C("last_name"),
        C("phone"),
        C("segment"),
        C("region"),
        C("acquisition_date", "date", locked=True),
        C("acquisition_channel"),
        C("email_consent", "boolean"),
        C("cancelled_at", TS, locked=True),
        C("is_archived", "boolean"),
        soft_delete_column="is_archived",
        # A day's changed customers are updates of rows spread over the whole table (each
        # new row version stays in its page when it fits): a BRIN range matched nearly all
        # of it (1M customers: 14.3k of ~20k pages read, 0.42 s, for the 9.3k new rows).
        loaded_at_index="btree",
        description="CRM customers (identity, segment, region, acquisition, consent); is_archived marks CRM deletes.",
    ),
    _crm(
        "support_cases",
        "case_id",
        C("case_id", "bigint", nullable=False, locked=True),
        C("customer_id", "bigint", locked=True),
        C("channel"),
        C("topic"),
        C("status"),
        C("opened_at", TS, locked=True),
        C("resolved_at", TS),
        C("reopened_at", TS),
        C("closed_at", TS),
        C("is_resolved", "boolean"),
        C("resolved_first_contact", "boolean"),
        C("contact_count", "integer"),
        description="Contact-center support cases.",
        not_in_future=("opened_at",),
    ),
    _crm(
        "interactions",
        "interaction_id",
        C("interaction_id", "bigint", nullable=False, locked=True),
        C("case_id", "bigint"),
        C("customer_id", "bigint", locked=True),
        C("channel"),
        C("direction"),
        C("agent_id", "integer"),
        C("started_at", TS, locked=True),
        C("ended_at", TS),
        C("handle_seconds", "integer"),
        description="Contact-center interactions (each contact of a case).",
    ),
    _crm(
        "referrals",
        "referral_id",
        C("referral_id", "bigint", nullable=False, locked=True),
        C("referrer_customer_id", "bigint", locked=True),
        C("referred_customer_id", "bigint", locked=True),
        C("referral_code"),
        description="Referral records linking referrer and referred customer.",
    ),
]

SALES = [
    _sales(
        "products",
        "product_id",
        C("product_id", "integer", nullable=False, locked=True),
        C("sku"),
        C("product_name"),
        C("product_line", locked=True),
        C("tier", "smallint", locked=True),
        C("tier_name"),
        C("list_price", "numeric(12,2)", locked=True),
        C("unit_cost", "numeric(12,2)", locked=True),
        C("currency", "character(3)"),
        description="Products with product line, tier, price and cost.",
    ),
    _sales(
        "orders",
        "order_id",
        C("order_id", "bigint", nullable=False, locked=True),
        C("sales_account_id"),
        C("customer_email"),
        C("status"),
        C("currency", "character(3)"),
        C("order_total", "numeric(12,2)", locked=True),
        C("ordered_at", TS, nullable=False, locked=True),
        description="Orders; status changes and refunds update the row.",
        not_in_future=("ordered_at",),
    ),
    _sales(
        "order_lines",
        "order_line_id",
        C("order_line_id", "bigint", nullable=False, locked=True),
        C("order_id", "bigint", nullable=False, locked=True),
        C("line_number", "smallint"),
        C("product_id", "integer", locked=True),
        C("quantity", "integer", locked=True),
        C("unit_price", "numeric(12,2)", locked=True),
        C("line_amount", "numeric(12,2)", locked=True),
        description="Order lines.",
    ),
    _sales(
        "refunds",
        "refund_id",
        C("refund_id", "bigint", nullable=False, locked=True),
        C("order_id", "bigint", locked=True),
        C("amount", "numeric(12,2)", locked=True),
        C("reason"),
        C("refunded_at", TS, locked=True),
        description="Refunds, full or partial.",
    ),
    _sales(
        "order_status_changes",
        "status_change_id",
        C("status_change_id", "bigint", nullable=False, locked=True),
        C("order_id", "bigint", locked=True),
        C("from_status"),
        C("to_status"),
        C("changed_at", TS, locked=True),
        description="Order status transitions.",
    ),
]

SURVEYS = [
    _surveys(
        "survey_definitions",
        "survey_id",
        C("survey_id", nullable=False, locked=True),
        C("survey_name"),
        C("touchpoint", locked=True),
        C("questions"),
        C("version", "integer"),
        C("created_at", TS),
        C("updated_at", TS),
        description="Survey definitions.",
    ),
    _surveys(
        "invitations",
        "invitation_id",
        C("invitation_id", "bigint", nullable=False, locked=True),
        C("survey_id"),
        C("touchpoint", locked=True),
        C("respondent_email"),
        C("related_order_id", "bigint"),
        C("related_case_id", "bigint"),
        C("related_interaction_id", "bigint"),
        C("sent_at", TS, locked=True),
        description="Survey invitations sent (denominator of the response rate).",
        not_in_future=("sent_at",),
    ),
    _surveys(
        "survey_responses",
        "response_id",
        C("response_id", "bigint", nullable=False, locked=True),
        C("invitation_id", "bigint"),
        C("survey_id"),
        C("touchpoint", locked=True),
        C("respondent_email"),
        C("ltr", "integer", locked=True),
        C("csat", "integer", locked=True),
        C("ces", "integer", locked=True),
        C("overall_satisfaction", "integer"),
        C("choose_again", "integer"),
        C("buy_different_products", "integer"),
        C("expand_use", "integer"),
        C("switch_to_competitor", "integer"),
        C("renew", "integer"),
        C("comment"),
        C("sent_at", TS),
        C("responded_at", TS, locked=True),
        description="Survey responses: LTR, CSAT, CES, loyalty-index items, comment.",
        not_in_future=("responded_at", "sent_at"),
    ),
]

# The landing folder of each survey entity (the export names responses "responses").
SURVEY_FOLDERS = {
    "survey_definitions": "survey_definitions",
    "invitations": "invitations",
    "survey_responses": "responses",
}

BY_SOURCE = {"crm": CRM, "sales": SALES, "surveys": SURVEYS}
