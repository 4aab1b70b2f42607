# gpures: show the unread notifications of the member logging in (their
# bookings starting or ending, queue grants, idle warnings, admin changes).
# Silent when there is nothing, when gpures-daemon is not running, or for a
# Unix user without an account; never asks anything; gives up after 300 ms.
case "$-" in
    *i*)
        if command -v gpures >/dev/null 2>&1 && [ -z "${GPURES_NO_MOTD:-}" ]; then
            gpures motd 2>/dev/null
        fi
        ;;
esac
