/*
 * anomaly.h - anomaly signals (issue 19 item 3): what looks wrong about a
 * new session, or about a session validated from somewhere, judged against
 * what the user's live sessions have shown before. Pure functions over
 * sessions, geolocations (session/geo.h) and a policy; the handlers read
 * the sessions, session/write.c records what fired (on the session's attrs
 * and as audit events, anomaly_detected).
 *
 * What a session keeps in its attrs (never settable by a client):
 *   "signals":   the names of the signals that fired on it, once each;
 *   "stepUp":    true while a step-up is pending (mfa was reset to false:
 *                raising it again by PUT renews the token and clears it);
 *   "countries": the countries it was created or validated from;
 *   "geoSeen":   {"lat","lon","at"}: where it was last seen, and when.
 */
#ifndef SD_ANOMALY_H
#define SD_ANOMALY_H

#include "session/geo.h"
#include "session/session.h"

#include <stdbool.h>
#include <stdint.h>

enum sd_signal {
    SD_SIG_NEW_DEVICE,  /* a deviceId (else user agent) none of the user's live sessions has */
    SD_SIG_NEW_COUNTRY, /* a country none of them (or this session) was seen from */
    SD_SIG_IMPOSSIBLE_TRAVEL, /* from the last point seen to here faster than max_speed_kmh */
    SD_SIG_BURST,             /* more than burst_count creates for the user within burst_window */
    SD_SIG_COUNT
};

enum sd_signal_action {
    SD_ACT_OFF,    /* not computed */
    SD_ACT_RECORD, /* audited and kept on the session */
    SD_ACT_FLAG,   /* and listed in the validate answer ("signals") */
    SD_ACT_STEPUP, /* and validation answers invalid (step_up_required) until mfa renewal */
};

typedef struct sd_anomaly_policy {
    unsigned char action[SD_SIG_COUNT]; /* sd_signal_action */
    double max_speed_kmh;               /* impossible travel above this */
    double min_distance_km;             /* moves shorter than this never count (accuracy) */
    int burst_count;                    /* creates allowed within the window */
    int64_t burst_window_ms;
    sd_geofence geofence;
} sd_anomaly_policy;

/* The signal's name in answers and audit reasons ("newDevice", "newCountry",
 * "impossibleTravel", "sessionBurst"); the action's ("off", "record",
 * "flag", "stepup"). */
const char *sd_signal_name(int sig);
const char *sd_signal_action_name(int action);
/* An action by name; -1 when text is none. */
int sd_signal_action_parse(const char *text);

/* True when validation must read a session's attrs even without a
 * geolocation: some signal flags or steps up. */
bool sd_anomaly_needs_state(const sd_anomaly_policy *p);
/* True when some signal is computed at all. */
bool sd_anomaly_enabled(const sd_anomaly_policy *p);

/* What fired, for the write that records it (session/write.c). */
typedef struct sd_signals {
    unsigned fired;                     /* 1 << sd_signal */
    unsigned char action[SD_SIG_COUNT]; /* each fired signal's action */
    char brief[SD_SIG_COUNT][12];       /* for the audit reason: "JP", "9712km", "4" */
    char detail[SD_SIG_COUNT][64];      /* for the log ("distance_km=... speed_kmh=...") */
    bool step_up;                       /* a fired signal's action is stepup */
    bool remember;                      /* validation: here differs from what the session
                                           keeps (a move, a country): write it */
    sd_geo here;                        /* where the client is */
    int64_t at;                         /* and when */
} sd_signals;

/* Signals of new session s (attrs as built from the create body; here its
 * geoLocation) against others, the user's n live sessions (with attrs), at
 * now. out is zeroed first. No signal fires for a user without live
 * sessions for the new-device and new-country signals (nothing to compare
 * with). */
void sd_anomaly_on_create(const sd_anomaly_policy *p, const sd_session *s, const sd_geo *here,
                          const sd_session *others, size_t n, int64_t now, sd_signals *out);

/* Signals of a validation of s (with attrs) from here at now. */
void sd_anomaly_on_validate(const sd_anomaly_policy *p, const sd_session *s, const sd_geo *here,
                            int64_t now, sd_signals *out);

/* Records sig in a session's attrs (an object, modified): the fired
 * signals' names, stepUp (and mfa false), the country among "countries"
 * and the point as "geoSeen". 0 or SD_ENOMEM. */
int sd_anomaly_apply(const sd_signals *sig, json_t *attrs);

/* After an mfa renewal: the pending step-up and the signals are cleared. */
void sd_anomaly_clear(json_t *attrs);

/* What a session's attrs say at validation under p: *step_up when a step-up
 * is pending; returns the bits (1 << sd_signal) of its recorded signals
 * whose action is flag. */
unsigned sd_anomaly_state(const sd_anomaly_policy *p, const json_t *attrs, bool *step_up);

#endif
