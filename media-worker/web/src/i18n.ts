// Every string a person sees. Vietnamese is the language of the reception offices and comes
// first; English is for the technical staff who support them. `en` has the type of `vi`, so a
// missing translation does not compile.

export type Lang = "vi" | "en";

const vi = {
  appName: "Tiếp công dân trực tuyến",
  langToggle: "English",
  roleHost: "Điểm cầu chủ trì",
  roleParticipant: "Điểm cầu",
  vietnamTime: "giờ Việt Nam",
  lobbyTitle: "Chuẩn bị vào phiên",
  lobbyHint: "Kiểm tra hình ảnh của bạn ở khung bên trái. Nên bấm «Chạy thử thiết bị» trước khi vào phiên.",
  camera: "Camera",
  microphone: "Micro",
  micLevel: "Mức âm thanh micro",
  noDevices: "(không có)",
  selfTest: "Chạy thử thiết bị",
  join: "Vào phiên",
  leave: "Rời phiên",
  mute: "Tắt micro",
  unmute: "Bật micro",
  cameraOff: "Tắt camera",
  cameraOn: "Bật camera",
  retry: "Thử lại",
  rejoin: "Vào lại phiên",
  you: "Bạn",
  hostBadge: "Chủ trì",
  waitingVideo: "Đang chờ hình ảnh…",
  ownCameraOff: "Camera đang tắt",
  micMuted: "Micro đang tắt",
  micHeldByHost: "Micro bị chủ trì tắt",
  speaking: "Đang phát biểu",
  startShare: "Chia sẻ tài liệu",
  stopShare: "Dừng chia sẻ",
  youShare: "Bạn đang chia sẻ tài liệu này",
  sharedBy: (name: string) => `Tài liệu do ${name} chia sẻ`,
  shareRefusedTitle: "Chưa chia sẻ được",
  shareInProgressBody: "Một điểm cầu khác đang chia sẻ tài liệu; mỗi lúc chỉ một điểm cầu được chia sẻ. Hãy chờ điểm đó dừng rồi thử lại.",
  shareStoppedTitle: "Đã dừng chia sẻ tài liệu",
  shareStoppedBody: (p: { by: string }) => `${p.by || "Điểm cầu chủ trì"} đã dừng phần chia sẻ tài liệu của điểm cầu này.`,
  hasFloor: "Đang được mời phát biểu",
  giveFloor: "Mời phát biểu",
  takeFloorBack: "Kết thúc phát biểu",
  mutedByHostFlag: "Bị chủ trì tắt micro",
  mutedByHostSelf: "Micro bị điểm cầu chủ trì tắt",
  mutePoint: "Tắt micro",
  askToUnmute: "Mời bật micro",
  mutePointHint: (name: string) => `Tắt micro của ${name} với mọi điểm cầu`,
  askToUnmuteHint: (name: string) => `Mời ${name} bật lại micro`,
  mutedByHostTitle: "Điểm cầu chủ trì đã tắt micro của bạn",
  mutedByHostBody: (p: { by: string }) =>
    `${p.by || "Điểm cầu chủ trì"} đã tắt micro của điểm cầu này: các điểm cầu khác không nghe thấy bạn. Khi được mời, bấm "Bật micro" để phát biểu.`,
  unmuteAskedTitle: "Điểm cầu chủ trì mời bạn bật micro",
  unmuteAskedBody: (p: { by: string }) =>
    `${p.by || "Điểm cầu chủ trì"} mời điểm cầu này phát biểu. Bấm "Bật micro" khi sẵn sàng.`,
  moderationFailed: (p: { code: string }) => `Không thực hiện được (mã lỗi: ${p.code}).`,
  alone: "Chưa có điểm cầu nào khác trong phiên. Hình ảnh các điểm cầu sẽ hiện ở đây khi họ vào.",
  qualityLabel: "Chất lượng kết nối",
  qualityGood: "Tốt",
  qualityFair: "Trung bình",
  qualityPoor: "Kém",
  qualityNone: "Chưa kết nối",
  joining: "Đang vào phiên…",
  pasteLabel: "Dán đường dẫn tham gia được gửi cho điểm cầu:",
  pasteGo: "Mở",

  noTokenTitle: "Thiếu mã tham gia",
  noTokenBody:
    "Đường dẫn tham gia có dạng …/join#token=…. Hãy mở đúng đường dẫn được gửi cho điểm cầu của bạn, hoặc dán đường dẫn vào ô bên dưới.",
  invalidLinkTitle: "Đường dẫn không hợp lệ",
  invalidLinkBody:
    "Đường dẫn tham gia bị sai hoặc không đầy đủ. Hãy mở lại đúng đường dẫn được gửi (không sửa, không cắt bớt), hoặc liên hệ đơn vị tổ chức để được cấp lại.",
  expiredTitle: "Đường dẫn đã hết hạn",
  expiredBody: (p: { until: string }) =>
    `Đường dẫn này chỉ dùng được đến ${p.until}. Hãy liên hệ đơn vị tổ chức để được cấp đường dẫn mới.`,
  expiredBodyNoTime: "Hãy liên hệ đơn vị tổ chức để được cấp đường dẫn mới.",
  notYetTitle: "Phiên chưa mở",
  notYetBody: (p: { from: string; start: string | null }) =>
    `Có thể vào phiên từ ${p.from}` +
    (p.start ? ` (chạy thử); phiên tiếp công dân bắt đầu lúc ${p.start}.` : ".") +
    " Nút «Vào phiên» sẽ tự bật khi đến giờ; trong lúc chờ, bạn có thể kiểm tra camera và micro.",
  revokedTitle: "Đường dẫn đã bị thu hồi",
  revokedBody: "Đơn vị tổ chức đã cấp đường dẫn mới cho điểm cầu này. Hãy dùng đường dẫn mới nhất được gửi.",
  wrongSessionTitle: "Đường dẫn dành cho phiên khác",
  wrongSessionBody:
    "Máy chủ này đang phục vụ một phiên khác. Hãy kiểm tra lại đường dẫn hoặc liên hệ đơn vị tổ chức.",
  notAllocatedTitle: "Máy chủ chưa sẵn sàng cho phiên",
  notAllocatedBody: (p: { seconds: number }) =>
    `Máy chủ của phiên đang được chuẩn bị. Trang sẽ tự thử lại sau ${p.seconds} giây.`,
  unreachableTitle: "Không kết nối được tới máy chủ",
  unreachableBody: (p: { seconds: number }) =>
    `Hãy kiểm tra mạng của cơ quan. Trang sẽ tự thử lại sau ${p.seconds} giây.`,
  restartingTitle: "Mất kết nối tới máy chủ",
  restartingBody: (p: { seconds: number; attempt: number }) =>
    `Máy chủ có thể đang khởi động lại. Trang sẽ tự kết nối lại sau ${p.seconds} giây (lần thử ${p.attempt}); không cần tải lại trang.`,
  reconnectingNow: "Đang kết nối lại…",
  reconnectCheckTitle: "Đang kiểm tra tự kết nối lại",
  reconnectCheckBody:
    "Máy chủ vừa ngắt kết nối một lần để kiểm tra trang tự vào lại được khi đường truyền chập chờn. Không cần làm gì: trang sẽ tự kết nối lại sau vài giây.",
  reconnectedTitle: "Đã kết nối lại",
  reconnectedBody: "Kết nối tới máy chủ đã được khôi phục.",
  blockedTitle: "Đường truyền hình ảnh và âm thanh bị chặn",
  blockedBody: (p: { address: string; seconds: number }) =>
    `Đã kết nối tới máy chủ nhưng không truyền được hình ảnh, âm thanh tới ${p.address}. ` +
    "Tường lửa hoặc mạng của cơ quan có thể đang chặn các cổng UDP/TCP này; hãy báo bộ phận công nghệ thông tin. " +
    `Trang sẽ tự thử lại sau ${p.seconds} giây.`,
  replacedTitle: "Đường dẫn đang được dùng ở nơi khác",
  replacedBody:
    "Đường dẫn của điểm cầu này vừa được dùng để vào phiên từ một cửa sổ hoặc máy tính khác, nên cửa sổ này đã rời phiên. " +
    "Nếu không phải cơ quan bạn mở, đường dẫn có thể đã bị lộ: hãy báo ngay cho cán bộ phụ trách phiên để được cấp đường dẫn mới. " +
    "Bấm «Vào lại phiên» nếu muốn dùng cửa sổ này.",
  sessionClosedTitle: "Phiên đã kết thúc",
  sessionClosedBody: "Đơn vị tổ chức đã đóng phiên. Cảm ơn điểm cầu đã tham gia.",
  leftTitle: "Bạn đã rời phiên",
  leftBody: "Bấm «Vào lại phiên» để tiếp tục.",
  errorTitle: "Đã xảy ra lỗi",
  errorBody: (p: { code: string; seconds: number }) =>
    `Máy chủ báo lỗi (${p.code}). Trang sẽ tự thử lại sau ${p.seconds} giây.`,

  noPermissionTitle: "Chưa được phép dùng camera và micro",
  noPermissionBody:
    "Trình duyệt đang chặn camera hoặc micro của trang này. Bấm biểu tượng camera (hoặc ổ khóa) ở đầu thanh địa chỉ, chọn «Cho phép», rồi bấm «Thử lại». Nếu máy tính do cơ quan quản lý, hãy nhờ bộ phận công nghệ thông tin cấp quyền.",
  noDeviceTitle: "Không tìm thấy camera hoặc micro",
  noDeviceBody: (p: { missing: string }) =>
    `Không tìm thấy ${p.missing}. Hãy cắm thiết bị vào máy tính, kiểm tra dây cáp, rồi bấm «Thử lại».`,
  deviceBusyTitle: "Camera hoặc micro đang bận",
  deviceBusyBody:
    "Thiết bị đang được ứng dụng khác sử dụng. Hãy đóng các ứng dụng họp trực tuyến khác (Zoom, Zalo, Teams…) rồi bấm «Thử lại».",
  insecureTitle: "Trang chưa được mở qua kết nối an toàn",
  insecureBody:
    "Trình duyệt chỉ cho dùng camera và micro trên trang https (hoặc địa chỉ nội bộ 127.0.0.1 / localhost). Hãy mở đúng đường dẫn được gửi, hoặc báo bộ phận công nghệ thông tin.",
  mediaErrorTitle: "Không mở được camera hoặc micro",
  mediaErrorBody: (p: { detail: string }) => `Lỗi của trình duyệt: ${p.detail}. Hãy bấm «Thử lại» hoặc chọn thiết bị khác.`,
  theCamera: "camera",
  theMicrophone: "micro",
  theCameraAndMicrophone: "camera và micro",

  checksTitle: "Kiểm tra kết nối",
  checksPassed: "Đạt: điểm cầu đã sẵn sàng cho phiên tiếp công dân.",
  checksNotYet: "Đang kiểm tra…",
  checksFailed: "Chưa đạt: xem hướng dẫn ở từng mục, khắc phục rồi vào lại phiên.",
  checkPassed: "Đạt.",
  checkPending: "Đang kiểm tra…",
  checkPath: (path: string) => `Đạt (đường truyền ${path}).`,
  checkItem: {
    signaling: "Kết nối bảo mật tới máy chủ",
    icePath: "Đường truyền hình ảnh, âm thanh",
    microphone: "Micro có tiếng",
    camera: "Camera có hình",
    hostVideo: "Nhận được hình của điểm cầu chủ trì",
    hostAudio: "Nghe được tiếng của điểm cầu chủ trì",
  },
  checkAdvice: {
    signaling: "Chưa đạt: trang không được mở qua https. Hãy mở đúng đường dẫn https được gửi.",
    icePath:
      "Chưa đạt: chưa thiết lập được đường truyền. Hãy nhờ cán bộ CNTT mở tường lửa theo hướng dẫn, rồi vào lại phiên.",
    microphone:
      "Chưa đạt: micro không thu được tiếng. Kiểm tra micro đã cắm, chưa bị tắt tiếng, đúng micro được chọn, rồi nói thử vài câu.",
    camera:
      "Chưa đạt: hình ảnh camera bị tối đen. Kiểm tra nắp che ống kính, đèn phòng và đúng camera được chọn.",
    hostVideo:
      "Chưa đạt: chưa hiển thị được hình của điểm cầu chủ trì. Kiểm tra điểm chủ trì đã vào phiên và đường truyền của đơn vị.",
    hostAudio:
      "Chưa đạt: chưa nghe được tiếng của điểm cầu chủ trì. Đề nghị điểm chủ trì nói thử; kiểm tra loa và âm lượng máy tính.",
  },
  selfTestTitle: "Kết quả chạy thử thiết bị",
  selfTestRunning: "Đang chạy thử (khoảng 10 giây). Hãy nói vài câu vào micro…",
  selfTestCamera: "Camera",
  selfTestMicrophone: "Micro",
  selfTestNetwork: "Đường truyền tới máy chủ",
  selfTestCameraOk: (p: { width: number; height: number }) => `Có hình ảnh (${p.width}×${p.height}).`,
  selfTestCameraFail:
    "Không nhận được hình ảnh từ camera. Kiểm tra camera đã cắm và không bị ứng dụng khác dùng, hoặc chọn camera khác.",
  selfTestMicOk: "Thu được âm thanh.",
  selfTestMicFail:
    "Micro không thu được âm thanh. Hãy nói thử vào micro; kiểm tra nút tắt tiếng trên micro hoặc tai nghe, hoặc chọn micro khác.",
  selfTestNetworkOk: (p: { rtt: string }) =>
    `Hình ảnh và âm thanh đi qua máy chủ và quay về đầy đủ (độ trễ khứ hồi ${p.rtt}).`,
  selfTestNetworkFail: (p: { reason: string }) =>
    `Không truyền được hình ảnh, âm thanh qua máy chủ: ${p.reason}. Tường lửa của cơ quan có thể đang chặn kết nối; hãy báo bộ phận công nghệ thông tin.`,
  selfTestNoMedia: "cần có camera hoặc micro để chạy thử đường truyền",
  selfTestJoinRefused: (p: { code: string }) => `máy chủ từ chối (${p.code})`,
  selfTestUnreachable: "không kết nối được tới máy chủ",
  selfTestBlocked: (p: { address: string }) => `không thiết lập được đường truyền tới ${p.address}`,
  selfTestNoReturn: "không nhận lại được hình ảnh, âm thanh trong 10 giây",
  selfTestPass: "Đạt: thiết bị và đường truyền đã sẵn sàng để vào phiên.",
  selfTestFail: "Chưa đạt: xem hướng dẫn ở từng mục, khắc phục rồi chạy thử lại.",
  selfTestLoopback: "Hình ảnh quay về từ máy chủ",
  unknownRtt: "chưa đo được",
};

export type Strings = typeof vi;

const en: Strings = {
  appName: "Online citizen reception",
  langToggle: "Tiếng Việt",
  roleHost: "Host point",
  roleParticipant: "Reception point",
  vietnamTime: "Vietnam time",
  lobbyTitle: "Get ready to join",
  lobbyHint: "Check your picture on the left. Run “Test my devices” before joining.",
  camera: "Camera",
  microphone: "Microphone",
  micLevel: "Microphone level",
  noDevices: "(none)",
  selfTest: "Test my devices",
  join: "Join the session",
  leave: "Leave",
  mute: "Mute",
  unmute: "Unmute",
  cameraOff: "Stop camera",
  cameraOn: "Start camera",
  retry: "Try again",
  rejoin: "Rejoin",
  you: "You",
  hostBadge: "Host",
  waitingVideo: "Waiting for video…",
  ownCameraOff: "Camera is off",
  micMuted: "Microphone is muted",
  micHeldByHost: "Muted by the host",
  speaking: "Speaking",
  startShare: "Share a document",
  stopShare: "Stop sharing",
  youShare: "You are sharing this document",
  sharedBy: (name: string) => `Document shared by ${name}`,
  shareRefusedTitle: "Could not share",
  shareInProgressBody: "Another point is sharing a document; one point shares at a time. Wait until it stops, then try again.",
  shareStoppedTitle: "Sharing stopped",
  shareStoppedBody: (p: { by: string }) => `${p.by || "The host"} stopped this point's document share.`,
  hasFloor: "Has the floor",
  giveFloor: "Give the floor",
  takeFloorBack: "End the floor",
  mutedByHostFlag: "Muted by the host",
  mutedByHostSelf: "Muted by the host",
  mutePoint: "Mute",
  askToUnmute: "Ask to unmute",
  mutePointHint: (name: string) => `Mute ${name} for every point`,
  askToUnmuteHint: (name: string) => `Ask ${name} to unmute`,
  mutedByHostTitle: "The host muted your microphone",
  mutedByHostBody: (p: { by: string }) =>
    `${p.by || "The host"} muted this point: the other points cannot hear you. When you are asked, press "Unmute" to speak.`,
  unmuteAskedTitle: "The host asks you to unmute",
  unmuteAskedBody: (p: { by: string }) => `${p.by || "The host"} asks this point to speak. Press "Unmute" when ready.`,
  moderationFailed: (p: { code: string }) => `That did not work (error code: ${p.code}).`,
  alone: "No other point has joined yet. Their video appears here when they do.",
  qualityLabel: "Connection quality",
  qualityGood: "Good",
  qualityFair: "Fair",
  qualityPoor: "Poor",
  qualityNone: "Not connected",
  joining: "Joining…",
  pasteLabel: "Paste the join link sent to your point:",
  pasteGo: "Open",

  noTokenTitle: "The join code is missing",
  noTokenBody: "A join link looks like …/join#token=…. Open the link sent to your point, or paste it below.",
  invalidLinkTitle: "This link is not valid",
  invalidLinkBody:
    "The join link is wrong or incomplete. Open the link exactly as it was sent, or ask the organiser for a new one.",
  expiredTitle: "This link has expired",
  expiredBody: (p: { until: string }) => `This link was valid until ${p.until}. Ask the organiser for a new one.`,
  expiredBodyNoTime: "Ask the organiser for a new link.",
  notYetTitle: "The session is not open yet",
  notYetBody: (p: { from: string; start: string | null }) =>
    `You can join from ${p.from}` +
    (p.start ? ` (rehearsal); the reception starts at ${p.start}.` : ".") +
    " The “Join the session” button turns on by itself when it is time; meanwhile you can check your camera and microphone.",
  revokedTitle: "This link was revoked",
  revokedBody: "The organiser issued a new link for this point. Use the newest link you were sent.",
  wrongSessionTitle: "This link is for another session",
  wrongSessionBody: "This server serves a different session. Check the link or ask the organiser.",
  notAllocatedTitle: "The server is not ready for the session",
  notAllocatedBody: (p: { seconds: number }) =>
    `The session's server is being prepared. Trying again in ${p.seconds} s.`,
  unreachableTitle: "Cannot reach the server",
  unreachableBody: (p: { seconds: number }) => `Check the office network. Trying again in ${p.seconds} s.`,
  restartingTitle: "Lost the connection to the server",
  restartingBody: (p: { seconds: number; attempt: number }) =>
    `The server may be restarting. Reconnecting in ${p.seconds} s (attempt ${p.attempt}); no need to reload the page.`,
  reconnectingNow: "Reconnecting…",
  reconnectCheckTitle: "Checking that the page reconnects",
  reconnectCheckBody:
    "The server cut the connection once to check that this page comes back by itself when the line drops. Nothing to do: it reconnects in a few seconds.",
  reconnectedTitle: "Reconnected",
  reconnectedBody: "The connection to the server is back.",
  blockedTitle: "Audio and video are blocked",
  blockedBody: (p: { address: string; seconds: number }) =>
    `The server answered, but no audio or video could flow to ${p.address}. ` +
    "A firewall or the office network may block these UDP/TCP ports; tell your IT staff. " +
    `Trying again in ${p.seconds} s.`,
  replacedTitle: "This link is in use elsewhere",
  replacedBody:
    "This point's link was just used to join from another window or computer, so this window left. " +
    "If nobody at your office did this, the link may have leaked: tell the session's organiser at once to get a new link. " +
    "Press “Rejoin” to use this window instead.",
  sessionClosedTitle: "The session has ended",
  sessionClosedBody: "The organiser closed the session. Thank you for taking part.",
  leftTitle: "You left the session",
  leftBody: "Press “Rejoin” to continue.",
  errorTitle: "Something went wrong",
  errorBody: (p: { code: string; seconds: number }) =>
    `The server reported an error (${p.code}). Trying again in ${p.seconds} s.`,

  noPermissionTitle: "Camera and microphone are not allowed",
  noPermissionBody:
    "The browser blocks the camera or microphone for this page. Click the camera (or padlock) icon at the start of the address bar, choose “Allow”, then press “Try again”. On a managed computer, ask your IT staff.",
  noDeviceTitle: "No camera or microphone found",
  noDeviceBody: (p: { missing: string }) =>
    `No ${p.missing} was found. Plug it in, check the cable, then press “Try again”.`,
  deviceBusyTitle: "The camera or microphone is busy",
  deviceBusyBody: "Another application is using it. Close other meeting apps (Zoom, Zalo, Teams…) and press “Try again”.",
  insecureTitle: "The page was not opened over a secure connection",
  insecureBody:
    "Browsers allow the camera and microphone only on https pages (or the local addresses 127.0.0.1 / localhost). Open the link exactly as sent, or tell your IT staff.",
  mediaErrorTitle: "Cannot open the camera or microphone",
  mediaErrorBody: (p: { detail: string }) => `Browser error: ${p.detail}. Press “Try again” or pick another device.`,
  theCamera: "camera",
  theMicrophone: "microphone",
  theCameraAndMicrophone: "camera and microphone",

  checksTitle: "Connection check",
  checksPassed: "Passed: this point is ready for the session.",
  checksNotYet: "Checking…",
  checksFailed: "Not passed: follow the advice for each item, then join again.",
  checkPassed: "Passed.",
  checkPending: "Checking…",
  checkPath: (path: string) => `Passed (path ${path}).`,
  checkItem: {
    signaling: "Secure connection to the server",
    icePath: "Media path",
    microphone: "Microphone picks up sound",
    camera: "Camera shows a picture",
    hostVideo: "The host's video is shown",
    hostAudio: "The host's audio is heard",
  },
  checkAdvice: {
    signaling: "Not passed: the page was not opened over https. Open the https link you were sent.",
    icePath: "Not passed: no media path yet. Ask IT to open the firewall as documented, then join again.",
    microphone:
      "Not passed: the microphone picks up nothing. Check it is plugged in, not muted and selected, then say a few words.",
    camera: "Not passed: the camera picture is black. Check the lens cover, the room's light and the selected camera.",
    hostVideo: "Not passed: the host's video is not shown yet. Check the host has joined, and your network.",
    hostAudio: "Not passed: the host cannot be heard yet. Ask the host to speak; check speakers and volume.",
  },
  selfTestTitle: "Device test results",
  selfTestRunning: "Testing (about 10 seconds). Say a few words into the microphone…",
  selfTestCamera: "Camera",
  selfTestMicrophone: "Microphone",
  selfTestNetwork: "Path to the server",
  selfTestCameraOk: (p: { width: number; height: number }) => `Picture received (${p.width}×${p.height}).`,
  selfTestCameraFail:
    "No picture from the camera. Check it is plugged in and not used by another application, or pick another camera.",
  selfTestMicOk: "Sound picked up.",
  selfTestMicFail:
    "The microphone picks up no sound. Speak into it; check the mute switch on the microphone or headset, or pick another microphone.",
  selfTestNetworkOk: (p: { rtt: string }) => `Audio and video went through the server and came back (round trip ${p.rtt}).`,
  selfTestNetworkFail: (p: { reason: string }) =>
    `Audio and video could not go through the server: ${p.reason}. The office firewall may block the connection; tell your IT staff.`,
  selfTestNoMedia: "a camera or microphone is needed to test the path",
  selfTestJoinRefused: (p: { code: string }) => `the server refused (${p.code})`,
  selfTestUnreachable: "the server cannot be reached",
  selfTestBlocked: (p: { address: string }) => `no media path to ${p.address}`,
  selfTestNoReturn: "nothing came back within 10 seconds",
  selfTestPass: "Passed: devices and network are ready to join.",
  selfTestFail: "Not passed: follow the advice for each item, then test again.",
  selfTestLoopback: "Video returned by the server",
  unknownRtt: "not measured",
};

const STRINGS: Record<Lang, Strings> = { vi, en };
const STORAGE_KEY = "tiepdan.lang";

let current: Lang = "vi";

export function initLang(): Lang {
  let stored: string | null = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch {
    // Storage can be disabled by policy; Vietnamese is the default anyway.
  }
  current = stored === "en" ? "en" : "vi";
  return current;
}

export function setLang(lang: Lang): void {
  current = lang;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // Not remembered across reloads; harmless.
  }
}

export function lang(): Lang {
  return current;
}

/** The strings of the current language. */
export function t(): Strings {
  return STRINGS[current];
}

export function text(key: string): string {
  const value = (STRINGS[current] as Record<string, unknown>)[key];
  return typeof value === "string" ? value : key;
}

const TIME_ZONE = "Asia/Ho_Chi_Minh";

/** A moment as the offices read it: in Vietnam time, whatever the PC's time zone is set to. */
export function formatMoment(ms: number): string {
  const locale = current === "vi" ? "vi-VN" : "en-GB";
  const time = new Intl.DateTimeFormat(locale, { timeZone: TIME_ZONE, hour: "2-digit", minute: "2-digit" }).format(ms);
  const date = new Intl.DateTimeFormat(locale, {
    timeZone: TIME_ZONE,
    weekday: "long",
    day: "2-digit",
    month: "2-digit",
    year: "numeric",
  }).format(ms);
  return current === "vi" ? `${time} ${date}` : `${time} on ${date}`;
}

export function formatClock(ms: number): { time: string; date: string } {
  const locale = current === "vi" ? "vi-VN" : "en-GB";
  return {
    time: new Intl.DateTimeFormat(locale, {
      timeZone: TIME_ZONE,
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hourCycle: "h23",
    }).format(ms),
    date: new Intl.DateTimeFormat(locale, {
      timeZone: TIME_ZONE,
      weekday: "long",
      day: "2-digit",
      month: "2-digit",
      year: "numeric",
    }).format(ms),
  };
}
