//! Why a payment use case did not finish, and whether trying again later can help.

use kernel::OrderId;

use crate::model::PaymentIntentId;
use crate::ports::{GatewayError, IntentStatus, StoreError};

/// Why a payment use case did not finish. A decline is not an error (it fails the payment, which
/// is an outcome); these are the cases where the event must be looked at again, later
/// ([`PaymentError::is_transient`]) or by a person.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The payment table failed, or holds a payment that cannot be.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stripe failed, or refused a call for a reason that is not the customer's card.
    #[error(transparent)]
    Stripe(#[from] GatewayError),
    /// Another invocation holds the authorization (a fresh claim, or its PaymentIntent won step
    /// 2): it finishes it, or its claim lapses.
    #[error("another invocation is authorizing {order_id}")]
    Busy { order_id: OrderId },
    /// The PaymentIntent is not settled at Stripe yet (processing, or not confirmed): card
    /// payments leave `processing` within seconds.
    #[error("PaymentIntent {intent} of {order_id} is not settled yet")]
    NotSettled { order_id: OrderId, intent: PaymentIntentId },
    /// The PaymentIntent to cancel is processing; it is cancelled once it settles.
    #[error("PaymentIntent {intent} of {order_id} is processing; it is cancelled once it settles")]
    CancelWhileProcessing { order_id: OrderId, intent: PaymentIntentId },
    /// Someone else captured or cancelled the PaymentIntent while payment was authorizing it
    /// (payment never captures, and cancels only for a cancelled order): a person must look.
    #[error("PaymentIntent {intent} of {order_id} is {status:?} while authorizing; a person must look")]
    ChangedElsewhere { order_id: OrderId, intent: PaymentIntentId, status: IntentStatus },
    /// Cancelling the PaymentIntent left it neither cancelled nor processing (captured by
    /// someone): a person must look.
    #[error("PaymentIntent {intent} of {order_id} is {status:?}, not canceled; a person must look")]
    NotCancelled { order_id: OrderId, intent: PaymentIntentId, status: IntentStatus },
    /// A dispatch reached a payment that is not authorized yet (the authorization is running, or
    /// the order's cancellation is voiding it): the dispatch is tried again until it can decide.
    #[error("{order_id} was dispatched before its payment could be captured (not authorized yet, or being voided)")]
    NotCapturableYet { order_id: OrderId },
    /// A capture is under way (another invocation's, or Stripe's answer is pending): look again
    /// once it is recorded.
    #[error("the capture of PaymentIntent {intent} of {order_id} is under way")]
    CaptureUnderWay { order_id: OrderId, intent: PaymentIntentId },
    /// A dispatch of an order with no authorization to capture (it failed, the order was
    /// cancelled before one was made, or payment never heard of the order): a person must look.
    #[error("{order_id} was dispatched but has no authorization to capture ({detail}); a person must look")]
    NothingToCapture { order_id: OrderId, detail: String },
    /// A refund that cannot be made (a return of an order whose payment failed, was voided or
    /// was never heard of, or in another currency; a return's refund Stripe refused): a person
    /// must look.
    #[error("{order_id} cannot be refunded ({detail}); a person must look")]
    NothingToRefund { order_id: OrderId, detail: String },
}

impl PaymentError {
    /// Whether the same event may succeed later (throttling, an outage, a race in progress), as
    /// opposed to needing a person.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(error) => error.is_transient(),
            Self::Stripe(error) => error.is_transient(),
            Self::Busy { .. }
            | Self::NotSettled { .. }
            | Self::CancelWhileProcessing { .. }
            | Self::NotCapturableYet { .. }
            | Self::CaptureUnderWay { .. } => true,
            Self::ChangedElsewhere { .. }
            | Self::NotCancelled { .. }
            | Self::NothingToCapture { .. }
            | Self::NothingToRefund { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_and_races_are_transient_and_what_a_person_must_see_is_not() {
        let order_id = OrderId::new();
        let intent = PaymentIntentId::parse("pi_1").unwrap();

        assert!(PaymentError::from(GatewayError::Unavailable("timed out".into())).is_transient());
        assert!(PaymentError::from(GatewayError::Conflict("payment_intent_unexpected_state".into())).is_transient());
        assert!(PaymentError::Busy { order_id }.is_transient());
        assert!(PaymentError::NotSettled { order_id, intent: intent.clone() }.is_transient());
        assert!(!PaymentError::from(GatewayError::Misconfigured("401".into())).is_transient());
        assert!(!PaymentError::from(StoreError::Corrupt { order_id, detail: "no total".into() }).is_transient());
        let status = IntentStatus::Succeeded;
        assert!(!PaymentError::ChangedElsewhere { order_id, intent, status }.is_transient());
    }
}
