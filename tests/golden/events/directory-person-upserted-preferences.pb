
$8dba042e-448f-5f5d-8c14-ebedbd5a38e9ò…ú»ÄîÔ:req-1"dana.li@vendor.example*
crm-case-92req-1Zê
ç
kim@vendor.example
Kim Nguyenlee@vendor.example*
email
chatEurope/Paris28
slack/https://hooks.slack.com/services/T000/B000/XXXX