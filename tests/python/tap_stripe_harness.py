"""Runs the open-source extractor tap-stripe against a base URL other than api.stripe.com.

Usage (with the extractor's own Python): tap_stripe_harness.py BASE_URL [tap-stripe arguments...]

The extractor itself runs unchanged. Two things point it here: the Stripe library's `api_base`, and its
request timer, a metrics wrapper that parses every URL against `api.stripe.com` and fails on any other
host, which is switched off.
"""

import sys

import stripe
import tap_stripe

stripe.api_base = sys.argv.pop(1)
tap_stripe.apply_request_timer_to_client = lambda client: None
sys.exit(tap_stripe.main())
