//! grammers' own `updates.getDifference`, in the pts-only form.
//!
//! grammers' message box asks for the difference with the `qts` it saw last, in memory
//! (`MessageBoxes::get_difference`); the server takes that `qts` as acknowledged and drops the
//! encrypted messages up to it, whether or not the engine has stored them. The request the
//! application's update loop sends must therefore carry `qts = 0` and `qts_limit = 0` — the
//! form TDLib uses to repair a pts gap (`GetPtsUpdateQuery`). The engine fetches encrypted
//! messages with its own getDifference, after storing what it has.

use grammers_session::updates::MessageBoxes;
use grammers_tl_types::functions::updates::GetDifference;

/// `request` with its secret-chat part removed: `qts = 0`, `qts_limit = 0`.
pub fn pts_only(mut request: GetDifference) -> GetDifference {
    request.qts = 0;
    request.qts_limit = Some(0);
    request
}

/// The getDifference the message box needs now, if any, in the pts-only form: send this in
/// place of `boxes.get_difference()`.
pub fn difference_request(boxes: &MessageBoxes) -> Option<GetDifference> {
    boxes.get_difference().map(pts_only)
}

#[cfg(test)]
mod tests {
    use grammers_session::updates::UpdatesLike;
    use grammers_tl_types as tl;

    use super::*;

    #[test]
    fn the_message_box_asks_without_a_qts() {
        let mut boxes = MessageBoxes::new();
        boxes.set_state(tl::types::updates::State {
            pts: 10,
            qts: 55,
            date: 3,
            seq: 4,
            unread_count: 0,
        });
        // The server says the gap is too long: grammers wants a difference.
        let _ = boxes.process_updates(UpdatesLike::Updates(tl::enums::Updates::TooLong));
        let theirs = boxes.get_difference().expect("a difference is due");
        assert_eq!(theirs.qts, 55, "grammers would acknowledge qts 55");
        let ours = difference_request(&boxes).expect("a difference is due");
        assert_eq!((ours.pts, ours.qts, ours.qts_limit), (10, 0, Some(0)));
        assert_eq!(ours.date, theirs.date);
    }
}
