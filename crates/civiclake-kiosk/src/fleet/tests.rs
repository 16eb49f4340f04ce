use super::availability::{availability, month_span, offline_spans};
use super::liveness::{Change, Heartbeat, LivenessConfig, PeripheralStatus, Tracker};
use super::registry::{Kiosk, OpeningHours, Peripheral, PeripheralKind, default_catalog};
use super::transaction::{NoticePayment, Transaction};
use civiclake_pa::NoticeNumber;
use std::collections::BTreeMap;

const S: i64 = 1_000_000;
const MIN: i64 = 60 * S;
/// 2026-01-05 00:00 in Rome (a Monday), UTC µs.
const MON: i64 = 1_767_567_600 * S;

fn kiosk() -> Kiosk {
    Kiosk {
        id: "K01".into(),
        name: "Palazzo Comunale".into(),
        lon: 11.0967,
        lat: 43.8806,
        host_site: "town hall".into(),
        opening_hours: OpeningHours::weekly(
            &["mon", "tue", "wed", "thu", "fri"],
            &[("08:00", "13:00"), ("14:00", "19:00")],
        ),
        peripherals: vec![
            Peripheral {
                kind: PeripheralKind::CardReader,
                model: "Ingenico".into(),
            },
            Peripheral {
                kind: PeripheralKind::Printer,
                model: String::new(),
            },
        ],
        services: vec!["pagopa".into(), "anagrafe-cert".into(), "info".into()],
        software_version: "2.1".into(),
    }
}

#[test]
fn a_kiosk_is_checked_field_by_field() {
    let catalog = default_catalog();
    assert_eq!(kiosk().check(&catalog), Ok(()));
    let refused = |k: Kiosk| k.check(&catalog).unwrap_err();
    let e = refused(Kiosk {
        id: "K 1".into(),
        ..kiosk()
    });
    assert_eq!(e.field, "id");
    let e = refused(Kiosk {
        lat: 143.0,
        ..kiosk()
    });
    assert_eq!(e.field, "lat");
    let mut k = kiosk();
    k.services.push("video-office".into());
    let e = refused(k);
    assert_eq!(e.field, "services[3]");
    assert!(e.reason.contains("needs a camera"), "{e}");
    let mut k = kiosk();
    k.services.push("bingo".into());
    assert!(refused(k).reason.contains("not in the service catalog"));
    let mut k = kiosk();
    k.opening_hours = OpeningHours::weekly(&["mon"], &[("13:00", "08:00")]);
    assert_eq!(refused(k).field, "opening_hours.days.mon[0]");
    let mut k = kiosk();
    k.opening_hours = OpeningHours::weekly(&["mon"], &[("08:00", "13:00"), ("12:00", "14:00")]);
    assert_eq!(refused(k).reason, "intervals overlap");
    let mut k = kiosk();
    k.opening_hours = OpeningHours::weekly(&["lun"], &[("08:00", "13:00")]);
    assert!(refused(k).reason.contains("not a day"));
}

#[test]
fn opening_hours_are_local_time_in_rome() {
    let hours = kiosk().opening_hours;
    // Monday: 08:00–13:00 and 14:00–19:00 in Rome (UTC+1 in January).
    let open = hours.open_between(MON, MON + 24 * 60 * MIN);
    assert_eq!(
        open,
        [
            (MON + 8 * 60 * MIN, MON + 13 * 60 * MIN),
            (MON + 14 * 60 * MIN, MON + 19 * 60 * MIN)
        ]
    );
    // A whole week: five days of ten hours.
    let week: i64 = hours
        .open_between(MON, MON + 7 * 24 * 60 * MIN)
        .iter()
        .map(|(a, b)| b - a)
        .sum();
    assert_eq!(week, 50 * 60 * MIN);
    // Cut at the span's ends.
    assert_eq!(
        hours.open_between(MON + 12 * 60 * MIN, MON + 15 * 60 * MIN),
        [
            (MON + 12 * 60 * MIN, MON + 13 * 60 * MIN),
            (MON + 14 * 60 * MIN, MON + 15 * 60 * MIN)
        ]
    );
    // The night the clocks go forward (Sunday 29 March 2026) has 23 hours.
    let (from, to) = month_span(2026, 3).unwrap();
    let always: i64 = OpeningHours::always()
        .open_between(from, to)
        .iter()
        .map(|(a, b)| b - a)
        .sum();
    assert_eq!(always, (31 * 24 - 1) * 60 * MIN);
    let sundays = OpeningHours::weekly(&["sun"], &[("00:00", "24:00")]);
    let open: i64 = sundays
        .open_between(from, to)
        .iter()
        .map(|(a, b)| b - a)
        .sum();
    assert_eq!(open, (5 * 24 - 1) * 60 * MIN);
}

fn beat(kiosk: &str, t: i64, peripherals: &[(PeripheralKind, PeripheralStatus)]) -> Heartbeat {
    Heartbeat {
        kiosk: kiosk.into(),
        time: t,
        software_version: None,
        peripherals: peripherals.iter().copied().collect::<BTreeMap<_, _>>(),
    }
}

#[test]
fn a_kiosk_goes_offline_after_k_missed_beats_and_back_online_with_the_next() {
    use PeripheralKind::*;
    use PeripheralStatus::*;
    let mut t = Tracker::new(LivenessConfig {
        interval_secs: 30,
        missed_beats: 3,
    });
    let first = t.beat(&beat(
        "K01",
        MON,
        &[(Printer, Online), (CardReader, Online)],
    ));
    assert_eq!(first.len(), 3);
    assert!(matches!(&first[0], Change::Online { since: None, .. }));
    // Beats without a change change nothing; a printer out of paper does.
    assert!(
        t.beat(&beat("K01", MON + 30 * S, &[(Printer, Online)]))
            .is_empty()
    );
    let changes = t.beat(&beat("K01", MON + 60 * S, &[(Printer, NotReady)]));
    assert_eq!(
        changes,
        [Change::Peripheral {
            kiosk: "K01".into(),
            peripheral: Printer,
            from: Some(Online),
            to: NotReady,
            at: MON + 60 * S
        }]
    );
    // Two missed beats: still online; the third: offline from the first missed one.
    assert!(t.tick(MON + 60 * S + 89 * S).is_empty());
    let off = t.tick(MON + 60 * S + 90 * S);
    assert_eq!(
        off,
        [Change::Offline {
            kiosk: "K01".into(),
            at: MON + 90 * S,
            noticed: MON + 150 * S,
            last_beat: MON + 60 * S
        }]
    );
    assert!(t.tick(MON + 600 * S).is_empty(), "offline once");
    assert!(!t.snapshot()[0].online);
    // An old beat arriving late changes nothing; the next one brings it back.
    assert!(t.beat(&beat("K01", MON + 30 * S, &[])).is_empty());
    let back = t.beat(&beat("K01", MON + 700 * S, &[]));
    assert_eq!(
        back,
        [Change::Online {
            kiosk: "K01".into(),
            at: MON + 700 * S,
            since: Some(MON + 90 * S)
        }]
    );
    // Replaying the changes gives the same state.
    let mut replayed = Tracker::new(t.config());
    for c in first.iter().chain(&changes).chain(&off).chain(&back) {
        replayed.replay(c);
    }
    assert_eq!(replayed.snapshot(), t.snapshot());
}

#[test]
fn heartbeats_are_read_from_json() {
    let b = Heartbeat::parse(
        "K02",
        br#"{"time": "2026-01-05T08:00:00+01:00", "peripherals": {"printer": "not-ready", "camera": "standby"}}"#,
        0,
    )
    .unwrap();
    assert_eq!(b.time, MON + 8 * 60 * MIN);
    assert_eq!(
        b.peripherals[&PeripheralKind::Printer],
        PeripheralStatus::NotReady
    );
    let arrived = Heartbeat::parse("K02", b"{}", 42).unwrap();
    assert_eq!(arrived.time, 42);
    let e = Heartbeat::parse("K02", br#"{"peripherals": {"printer": "jammed"}}"#, 0).unwrap_err();
    assert!(e.reason.contains("jammed"), "{e}");
}

#[test]
fn availability_counts_downtime_within_opening_hours_only() {
    let hours = kiosk().opening_hours;
    // Offline Monday 12:00–15:00: 60 of the morning's and 60 of the afternoon's minutes; the
    // lunch break does not count.
    let changes = [
        Change::Offline {
            kiosk: "K01".into(),
            at: MON + 12 * 60 * MIN,
            noticed: MON + 12 * 60 * MIN + 90 * S,
            last_beat: MON + 12 * 60 * MIN - 30 * S,
        },
        Change::Online {
            kiosk: "K01".into(),
            at: MON + 15 * 60 * MIN,
            since: Some(MON + 12 * 60 * MIN),
        },
        // Offline again Friday 18:00, still offline at the week's end.
        Change::Offline {
            kiosk: "K01".into(),
            at: MON + (4 * 24 + 18) * 60 * MIN,
            noticed: MON + (4 * 24 + 18) * 60 * MIN,
            last_beat: MON,
        },
    ];
    let week_end = MON + 7 * 24 * 60 * MIN;
    let spans = offline_spans(&changes, week_end);
    assert_eq!(spans.len(), 2);
    let a = availability(&hours, &spans, MON, week_end);
    assert_eq!(a.open_minutes, 3000.0);
    assert_eq!(a.down_minutes, 180.0);
    assert_eq!(a.availability, Some(1.0 - 180.0 / 3000.0));
    // Closed all the span: no availability to give.
    let sat = MON + 5 * 24 * 60 * MIN;
    assert_eq!(
        availability(&hours, &spans, sat, week_end).availability,
        None
    );
}

fn notice(base: &str) -> String {
    NoticeNumber::new_aux3(2, base).unwrap().to_string()
}

fn payment(notices: Vec<NoticePayment>, amount: u64) -> Transaction {
    Transaction {
        id: "t-1".into(),
        time: "2026-01-05T09:00:00Z".parse().unwrap(),
        service: "pagopa".into(),
        method: super::transaction::Method::Card,
        outcome: super::transaction::Outcome::Completed,
        duration_s: 95.0,
        amount_cents: amount,
        notices,
        office: None,
        call_s: None,
        pages: None,
    }
}

fn paid(base: &str, cents: u64) -> NoticePayment {
    NoticePayment {
        notice_number: notice(base),
        creditor_fiscal_code: "00337360978".into(),
        amount_cents: cents,
        qr: None,
    }
}

#[test]
fn payments_are_checked_with_pagopa_rules() {
    let catalog = default_catalog();
    let offered = kiosk().services;
    let check = |t: Transaction| t.check("K01", &offered, &catalog);
    let ok = check(payment(
        vec![paid("0000000000001", 1250), paid("0000000000002", 300)],
        1550,
    ))
    .unwrap();
    assert_eq!(ok.kind, super::registry::ServiceKind::Payment);
    // A QR payload that matches the notice is fine; one that does not is refused.
    let mut n = paid("0000000000001", 1250);
    n.qr = Some(format!("PAGOPA|002|{}|00337360978|1250", n.notice_number));
    assert!(check(payment(vec![n.clone()], 1250)).is_ok());
    n.qr = Some(format!("PAGOPA|002|{}|00337360978|1200", n.notice_number));
    let e = check(payment(vec![n], 1250)).unwrap_err();
    assert_eq!(e.field, "notices[0].qr");
    // Wrong check digits.
    let mut n = paid("0000000000001", 1250);
    n.notice_number.replace_range(16.., "00");
    let e = check(payment(vec![n], 1250)).unwrap_err();
    assert_eq!(e.field, "notices[0].notice_number");
    assert!(e.reason.contains("check digits"), "{e}");
    // A creditor code of 10 digits, a zero amount, totals that differ, six notices.
    let mut n = paid("0000000000001", 1250);
    n.creditor_fiscal_code = "0033736097".into();
    assert_eq!(
        check(payment(vec![n], 1250)).unwrap_err().field,
        "notices[0].creditor_fiscal_code"
    );
    assert_eq!(
        check(payment(vec![paid("0000000000001", 0)], 0))
            .unwrap_err()
            .field,
        "notices[0].amount_cents"
    );
    assert_eq!(
        check(payment(vec![paid("0000000000001", 100)], 90))
            .unwrap_err()
            .field,
        "amount_cents"
    );
    let six = (1..=6)
        .map(|i| paid(&format!("000000000000{i}"), 100))
        .collect();
    assert!(
        check(payment(six, 600))
            .unwrap_err()
            .reason
            .contains("1 to 5 notices")
    );
    let twice = vec![paid("0000000000001", 100), paid("0000000000001", 100)];
    assert!(
        check(payment(twice, 200))
            .unwrap_err()
            .reason
            .contains("twice")
    );
    // A service the kiosk does not offer.
    let mut t = payment(vec![paid("0000000000001", 100)], 100);
    t.service = "tari".into();
    assert!(check(t).unwrap_err().reason.contains("does not offer"));
    // Money without a way to pay it.
    let mut t = payment(vec![paid("0000000000001", 100)], 100);
    t.method = super::transaction::Method::None;
    assert_eq!(check(t).unwrap_err().field, "method");
}

mod checkout {
    use super::super::payment::{
        Cart, CartNotice, CheckoutClient, PaymentError, PaymentMethod, PaymentStart, ReturnUrls,
    };
    use super::notice;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    use serde_json::Value;
    use std::sync::{Arc, Mutex};

    fn urls() -> ReturnUrls {
        ReturnUrls {
            return_ok_url: "https://kiosk.comune.prato.it/ok".into(),
            return_cancel_url: "https://kiosk.comune.prato.it/cancel".into(),
            return_error_url: "https://kiosk.comune.prato.it/error".into(),
        }
    }

    fn cart_notice(base: &str, amount: u64) -> CartNotice {
        CartNotice {
            notice_number: notice(base),
            fiscal_code: "00337360978".into(),
            amount,
            company_name: "Comune di Prato".into(),
            description: "TARI 2026, rata 1".into(),
        }
    }

    /// A stand-in for Checkout's carts API: what pagoPA answers (302 to the cart's page, 400
    /// for a malformed cart), keeping the requests it got.
    async fn stand_in() -> (String, Arc<Mutex<Vec<Value>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let kept = got.clone();
        let app = axum::Router::new().route(
            "/checkout/ec/v1/carts",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let kept = kept.clone();
                async move {
                    let json = headers
                        .get(header::CONTENT_TYPE)
                        .is_some_and(|c| c.as_bytes().starts_with(b"application/json"));
                    let Ok(cart) = serde_json::from_str::<Value>(&body) else {
                        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
                    };
                    let notices = cart["paymentNotices"].as_array().map_or(0, Vec::len);
                    if !json || !(1..=5).contains(&notices) || cart["returnUrls"].is_null() {
                        return (StatusCode::BAD_REQUEST, "Invalid request").into_response();
                    }
                    let id = cart["idCart"].as_str().unwrap_or("cart").to_string();
                    kept.lock().unwrap().push(cart);
                    (
                        StatusCode::FOUND,
                        [(
                            header::LOCATION,
                            format!("https://checkout.pagopa.it/c/{id}"),
                        )],
                    )
                        .into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, got)
    }

    #[tokio::test]
    async fn a_cart_goes_to_checkout_and_the_kiosk_gets_the_page_to_show() {
        let (url, got) = stand_in().await;
        let client = CheckoutClient::new(&url, reqwest::Client::builder()).unwrap();
        let cart = Cart::new(
            vec![
                cart_notice("0000000000001", 12_050),
                cart_notice("0000000000002", 800),
            ],
            urls(),
            None,
            Some("K01-s42".into()),
        )
        .unwrap();
        assert_eq!(cart.total_cents(), 12_850);
        let start = client.start(&cart).await.unwrap();
        assert_eq!(
            start,
            PaymentStart::Redirect {
                url: "https://checkout.pagopa.it/c/K01-s42".into()
            }
        );
        let sent = got.lock().unwrap().pop().unwrap();
        assert_eq!(
            sent["paymentNotices"][0]["noticeNumber"],
            notice("0000000000001")
        );
        assert_eq!(sent["paymentNotices"][0]["fiscalCode"], "00337360978");
        assert_eq!(sent["paymentNotices"][1]["amount"], 800);
        assert_eq!(
            sent["returnUrls"]["returnOkUrl"],
            "https://kiosk.comune.prato.it/ok"
        );
        assert!(sent.get("emailNotice").is_none());
    }

    #[tokio::test]
    async fn a_refused_cart_and_an_unreachable_checkout_are_errors_that_say_so() {
        let (url, _) = stand_in().await;
        // The stand-in refuses a cart without return URLs: a cart we never build, so send
        // one by hand to see the refusal come back.
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{url}/checkout/ec/v1/carts"))
            .json(&serde_json::json!({"paymentNotices": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        // Through the client: nothing listens on port 9.
        let client = CheckoutClient::new("http://127.0.0.1:9", reqwest::Client::builder()).unwrap();
        let cart = Cart::new(vec![cart_notice("0000000000001", 100)], urls(), None, None).unwrap();
        let e = client.start(&cart).await.unwrap_err();
        assert!(matches!(e, PaymentError::Unavailable(_)), "{e}");
    }

    #[test]
    fn carts_hold_one_to_five_valid_notices() {
        let six = (1..=6)
            .map(|i| cart_notice(&format!("000000000000{i}"), 100))
            .collect();
        assert!(
            Cart::new(six, urls(), None, None)
                .unwrap_err()
                .reason
                .contains("1 to 5")
        );
        let e = Cart::new(vec![cart_notice("0000000000001", 0)], urls(), None, None).unwrap_err();
        assert_eq!(e.field, "notices[0].notice");
        let twice = vec![
            cart_notice("0000000000001", 1),
            cart_notice("0000000000001", 2),
        ];
        assert!(
            Cart::new(twice, urls(), None, None)
                .unwrap_err()
                .reason
                .contains("twice")
        );
        let mut bad = urls();
        bad.return_ok_url = "kiosk/ok".into();
        let e = Cart::new(vec![cart_notice("0000000000001", 1)], bad, None, None).unwrap_err();
        assert_eq!(e.field, "return_urls.return_ok_url");
    }
}
