//! AWS on-demand list prices, us-east-1, in picodollars (10⁻¹² $) per unit, so a bill stays in
//! integers. A cost per order in picodollars is the cost per million orders in microdollars.
//!
//! Source: the AWS pricing pages for each service, us-east-1, as listed on 2026-11-28 (the
//! DynamoDB on-demand prices are those of the November 2024 price cut). Free tiers are left out.
//! BENCHMARKS.md states the same table; change both together.

/// DynamoDB on-demand, standard table class: $0.625 per million write request units.
pub const DYNAMODB_WRITE_UNIT: u64 = 625_000;
/// $0.125 per million read request units.
pub const DYNAMODB_READ_UNIT: u64 = 125_000;
/// EventBridge custom events (`PutEvents`, per 64 KB entry): $1.00 per million.
pub const EVENTBRIDGE_EVENT: u64 = 1_000_000;
/// SQS standard queue requests (per 64 KB chunk): $0.40 per million.
pub const SQS_REQUEST: u64 = 400_000;
/// Secrets Manager API calls: $0.05 per 10,000.
pub const SECRETS_MANAGER_CALL: u64 = 5_000_000;
/// Lambda requests: $0.20 per million.
pub const LAMBDA_REQUEST: u64 = 200_000;
/// Lambda duration, x86_64: $0.0000166667 per GB-second.
pub const LAMBDA_GB_SECOND: u64 = 16_666_700;
/// API Gateway HTTP API requests (first 300 million a month): $1.00 per million.
pub const HTTP_API_REQUEST: u64 = 1_000_000;

/// Lambda duration cost of `mb_ms` megabyte-milliseconds, in picodollars.
pub fn lambda_duration(mb_ms: u64) -> u64 {
    u64::try_from(u128::from(mb_ms) * u128::from(LAMBDA_GB_SECOND) / 1_024_000).unwrap_or(u64::MAX)
}

/// Picodollars per order printed as dollars per million orders (`12_345_678` → `$12.35`).
pub fn per_million(picodollars: u64) -> String {
    let cents = (picodollars + 5_000) / 10_000;
    format!("${}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cost_per_order_in_picodollars_reads_as_dollars_per_million_orders() {
        // 1 write unit per order = $0.625 per million orders.
        assert_eq!(per_million(DYNAMODB_WRITE_UNIT), "$0.63");
        assert_eq!(per_million(50 * EVENTBRIDGE_EVENT), "$50.00");
    }

    #[test]
    fn a_gigabyte_second_of_lambda_costs_its_list_price() {
        assert_eq!(lambda_duration(1024 * 1000), LAMBDA_GB_SECOND);
    }
}
