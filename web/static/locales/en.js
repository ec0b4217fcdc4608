// @ts-check
// English: the reference catalog. Every other catalog has exactly these
// keys, with the same {placeholders}; catalog_test.go checks it.
//
// Format (the test reads it as JSON): after "export default" one JSON
// object of key → text, or key → plural forms by Intl.PluralRules category
// ("other" always; the forms the language uses besides). Keys are grouped
// by where the text shows.
/** @type {import('../i18n.js').Catalog} */
export default {
  "meta.description": "Talk to strangers: video or text chat with someone picked at random.",
  "header.onlineUnknown": "… online",
  "header.online": { "one": "{count} stranger online", "other": "{count} strangers online" },
  "language.label": "Language",

  "landing.title": "Talk to strangers",
  "landing.intro": "Press Start and you are paired at random with someone else who did. Say hi, or press Next to meet someone new. Nothing is recorded; video goes straight between the two of you whenever your networks allow.",
  "landing.modeQuestion": "How do you want to talk?",
  "landing.modeVideo": "Video and text",
  "landing.modeText": "Text only",
  "landing.hideIP": "Hide my IP",
  "landing.hideIPHint": "(video goes through our relay, so the stranger never learns your address; a little more delay)",
  "landing.autoNext": "Find someone new automatically when a stranger leaves",
  "landing.terms": "By pressing Start you confirm you are 18 or older. Be kind; press Report if someone is not.",

  "interests.label": "Interests",
  "interests.optional": "(optional)",
  "interests.list": "Your interests",
  "interests.placeholder": "Type a topic, press Enter",
  "interests.hint": "You meet someone who shares one first; if nobody does, anyone after a few seconds.",
  "interests.remove": "Remove {tag}",

  "media.insecure": "Your camera can only be used on a secure page, and this one was opened over plain HTTP. A real deployment needs HTTPS (http://localhost is fine for trying it out). Text only works here.",
  "media.denied": "Camera and microphone access was denied. Allow them for this site in your browser’s settings (often the camera icon in the address bar) and press Start again, or choose Text only.",
  "media.missing": "No camera or microphone was found. Connect one and press Start again, or choose Text only.",
  "media.busy": "Your camera or microphone is being used by another application or tab. Close it and press Start again.",
  "media.other": "Your camera and microphone could not be started ({error}).",
  "media.controls": "Your camera and microphone",

  "button.start": "Start",
  "button.next": "Next",
  "button.stop": "Stop",
  "button.send": "Send",
  "button.report": "Report",
  "button.mute": "Mute mic",
  "button.cameraOff": "Camera off",
  "button.cancel": "Cancel",
  "button.sendReport": "Send report",

  "video.remote": "Stranger's video",
  "video.local": "Your video",
  "video.tapToHear": "Tap to hear the stranger",

  "devices.summary": "Devices",
  "devices.camera": "Camera",
  "devices.microphone": "Microphone",
  "devices.unnamed": "Device {number}",
  "devices.cameraFailed": "That camera could not be started.",
  "devices.micFailed": "That microphone could not be started.",

  "server.reconnecting": "Lost the connection to the server; reconnecting…",
  "server.reconnectingInCall": "Lost the connection to the server; reconnecting… Your call continues.",
  "server.cannotOpen": "Cannot open {url}: {error}",
  "server.protocol": "The server does not speak this page’s protocol. Reload the page.",

  "stage.looking": "Looking for a stranger…",
  "stage.lookingInterests": "Looking for someone who also likes {interests}…",
  "stage.connecting": "Connecting to the stranger…",
  "stage.couldNotConnect": "Could not connect to this stranger. Press Next to try someone else.",
  "stage.left": "Stranger has disconnected.",
  "stage.leftDropped": "Stranger has disconnected (their connection dropped).",
  "stage.sessionLost": "The connection to the server was lost for too long, so that chat ended.",
  "stage.reported": "Thanks for the report. You will not meet this stranger again.",

  "waiting.fallback": "If nobody does, anyone in {seconds} s",
  "waiting.count": { "one": "{count} waiting ·", "other": "{count} waiting ·" },
  "waiting.countVideo": { "one": "{count} waiting for video chat ·", "other": "{count} waiting for video chat ·" },
  "waiting.countText": { "one": "{count} waiting for text chat ·", "other": "{count} waiting for text chat ·" },
  "waiting.elapsed": "waited {time}",

  "tip.escTwice": "Tip: press Esc twice during a chat to skip to someone new.",
  "tip.interests": "Tip: add interests on the start page to meet people who like the same things first.",
  "tip.beKind": "Tip: be kind. If someone is not, press Report: you will never be paired with them again.",
  "tip.fewOnline": "Tip: when few people are online, you may meet someone you talked to a moment ago.",
  "tip.hideIP": "Tip: “Hide my IP” on the start page sends video through our relay, so the stranger never learns your address.",

  "connection.connecting": "Connecting…",
  "connection.reconnecting": "Connection interrupted, recovering…",
  "connection.failed": "Could not connect. {reason}",
  "connection.relayed": "Relayed",
  "connection.relayedOver": "Relayed (TURN over {transport})",
  "connection.direct": "Direct",
  "connection.directOver": "Direct ({transport})",
  "connection.connected": "Connected",
  "connection.rtt": " · {ms} ms",

  "call.hideIPRelayUnreachable": "Could not reach our relay server, which “Hide my IP” needs. Your network may block it; try again without “Hide my IP” or on another network.",
  "call.hideIPNoRelay": "This server offers no relay, which “Hide my IP” needs. Try again without it.",
  "call.udpBlocked": "No direct connection was possible and our relay server could not be reached: your network probably blocks UDP (common on work and school networks). Try another network.",
  "call.noRelay": "No direct connection was possible, and this server offers no relay to fall back on.",
  "call.partnerBlocked": "Our relay was reachable from here, so the stranger’s network is probably blocking the connection. Press Next to try someone else.",

  "network.relayBlockedHideIP": "Heads-up: our relay server cannot be reached from your network, and “Hide my IP” needs it. Calls will probably not connect; try without it or on another network.",
  "network.relayBlocked": "Heads-up: our relay server cannot be reached from your network (UDP and TCP to it seem blocked). Calls will only connect when a direct connection is possible.",

  "chat.region": "Chat with a stranger",
  "chat.log": "Messages",
  "chat.messageLabel": "Message",
  "chat.placeholder": "Type a message",
  "chat.you": "You: ",
  "chat.stranger": "Stranger: ",
  "chat.typing": "Stranger is typing…",
  "chat.common": "You both like {interests}.",
  "chat.matched": "You’re now talking to a random stranger. Say hi!",
  "chat.skipped": "You skipped to someone new.",
  "chat.thenNext": "{text} Press Next to meet someone new.",
  "chat.thenFinding": "{text} Finding someone new…",

  "keys.escTwice": "Esc twice: next stranger",
  "keys.escAgain": "Press Esc again to skip to someone new.",

  "report.title": "Report this stranger",
  "report.intro": "The chat ends and you will not be paired with them again.",
  "report.question": "What happened?",
  "report.nudity": "Nudity or sexual content",
  "report.harassment": "Harassment or hate",
  "report.minor": "Seems to be a minor",
  "report.spam": "Spam or advertising",
  "report.other": "Something else"
};
